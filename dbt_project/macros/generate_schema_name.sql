{#
    Custom schemas are used as given (staging, intermediate, marts) instead of dbt's default
    "<target schema>_<custom schema>", so that downstream readers (quality checks, the
    scorecard, BI) can address marts.customers without knowing the dbt target.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
