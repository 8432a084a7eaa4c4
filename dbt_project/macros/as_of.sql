{#
    "Now" for every model. With the var unset the warehouse's current_date is used; with
    --vars '{as_of_date: "YYYY-MM-DD"}' results are reproducible for a given raw snapshot.

    Convention: the as-of instant is midnight UTC at the start of as_of_date, and windows
    are half-open, so "the last 30 days" is [as_of - 30 days, as_of).
#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date', none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        current_date
    {%- else -%}
        cast('{{ value | string | trim }}' as date)
    {%- endif -%}
{%- endmacro %}

{% macro as_of_timestamp() -%}
    cast({{ as_of_date() }} as timestamp)
{%- endmacro %}

{% macro as_of_month() -%}
    cast({{ dbt.date_trunc('month', 'cast(' ~ as_of_date() ~ ' as timestamp)') }} as date)
{%- endmacro %}
