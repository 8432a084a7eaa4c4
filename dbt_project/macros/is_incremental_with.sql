{#
    is_incremental(), and the stored table already has `columns`: the bookkeeping an
    incremental model reads from itself (its load watermark, refreshed_at). A warehouse built
    before a model kept them has the table without them; the model then builds from the whole
    history once, dbt adds the columns (on_schema_change='append_new_columns') and replaces
    every row by key, and the next run is incremental again, instead of failing on a column
    that is not there.
#}
{% macro is_incremental_with(columns) %}
    {% if not (execute and is_incremental()) %}
        {% do return(false) %}
    {% endif %}
    {% set stored = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list %}
    {% for column in columns %}
        {% if column not in stored %}
            {% do return(false) %}
        {% endif %}
    {% endfor %}
    {% do return(true) %}
{% endmacro %}
