{#
    When this dbt invocation started (UTC), as a TIMESTAMP: the `refreshed_at` of every row an
    incremental model writes in the run. The models downstream, and publishing, take the rows
    written since they last looked by comparing it; one value per invocation keeps the rows of
    one run together.
#}
{% macro refreshed_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}
