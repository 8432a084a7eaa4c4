{#
    A test's `where` config, as dbt applies it, with one placeholder of our own:
    `__written_last__` stands for the rows the model's latest run wrote (`refreshed_at` equal to
    its newest value). The data tests of the incremental models check that slice only, so a
    daily run tests what the day brought, not the history; with the var `full_history_tests`
    (a full refresh, and the Sunday run of the daily schedule) they check every row. Keys stay
    whole either way: those models replace their rows by key, so a slice without duplicates
    leaves none. dbt lets a yml `where` use no macros; overriding this one is its documented way.
#}
{% macro get_where_subquery(relation) %}
    {% set where = config.get('where') %}
    {% if where and '__written_last__' in where %}
        {% set latest = 'refreshed_at = (select max(refreshed_at) from ' ~ relation ~ ')' %}
        {% set where = where | replace('__written_last__', 'true' if var('full_history_tests', false) else latest) %}
    {% endif %}
    {% if where %}
        {% do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') as dbt_subquery') %}
    {% endif %}
    {% do return(relation) %}
{% endmacro %}
