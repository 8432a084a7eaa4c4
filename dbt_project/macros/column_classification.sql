{#-
  Ends every `dbt build`, `run` and `seed` (on-run-end, dbt_project.yml): each model and seed
  the command built holds only columns its yml classifies, with values of the vocabulary (var
  data_classification). The relation's actual columns are read back (one metadata query per
  relation), so a column the SQL adds without declaring it fails the command as surely as a
  declared column without meta.classification. Whether a column is classified as strictly as
  what it derives from is lineage, checked in Python (privacy/classification.py).
-#}
{% macro check_column_classification(results) %}
    {%- if not execute or flags.WHICH not in ('build', 'run', 'seed') -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set words = var('data_classification') -%}
    {%- set problems = [] -%}
    {%- for result in results
        if result.node.resource_type in ('model', 'seed')
        and result.status == 'success'
        and result.node.config.materialized != 'ephemeral' -%}
        {%- set node = result.node -%}
        {%- set declared = {} -%}
        {%- for name, column in node.columns.items() -%}
            {%- do declared.update({name | lower: column.meta or {}}) -%}
        {%- endfor -%}
        {%- set relation = api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias) -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- set where = node.name ~ '.' ~ column.name -%}
            {%- set meta = declared.get(column.name | lower) -%}
            {%- if meta is none -%}
                {%- do problems.append(where ~ ': not in its yml, declare it with meta.classification') -%}
            {%- elif meta.get('classification') is none -%}
                {%- do problems.append(where ~ ': no meta.classification') -%}
            {%- elif meta.get('classification') not in words['classes'] -%}
                {%- do problems.append(where ~ ': classification ' ~ meta.get('classification') ~ ' is none of ' ~ words['classes'] | join(', ')) -%}
            {%- endif -%}
            {%- if meta and meta.get('personal_data') is not none and meta.get('personal_data') not in words['personal_data'] -%}
                {%- do problems.append(where ~ ': personal_data ' ~ meta.get('personal_data') ~ ' is none of ' ~ words['personal_data'] | join(', ')) -%}
            {%- endif -%}
            {%- set identifies = meta.get('identifies') if meta else none -%}
            {%- if identifies is not none and (identifies not in words['identifies'] or meta.get('personal_data') != 'identifier') -%}
                {%- do problems.append(
                    where ~ ': identifies ' ~ identifies ~ ' needs personal_data identifier and one of ' ~ words['identifies'] | join(', ')
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if problems -%}
        {{- exceptions.raise_compiler_error(
            'Columns without a valid classification (meta.classification: ' ~ words['classes'] | join(' | ')
            ~ '; see var data_classification in dbt_project.yml):\n  ' ~ problems | join('\n  ')
        ) -}}
    {%- endif -%}
    {{- return('') -}}
{% endmacro %}
