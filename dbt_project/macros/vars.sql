{#
    One entry of a var that maps names to values, e.g. var_entry('health_weights', 'support'):
    an unknown key fails the run instead of rendering nothing.
#}
{% macro var_entry(var_name, key) -%}
    {%- set mapping = var(var_name) -%}
    {%- if key not in mapping -%}
        {{ exceptions.raise_compiler_error("var " ~ var_name ~ " has no entry " ~ key) }}
    {%- endif -%}
    {{ mapping[key] }}
{%- endmacro %}
