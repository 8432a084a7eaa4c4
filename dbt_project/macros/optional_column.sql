{#
    A raw column that a source sends only sometimes: dlt creates a column with the first
    non-null value it sees, so a Stripe account that never used a coupon has no
    `discount__coupon__duration`, and one on an older API version no `parent__type`. The
    column where the raw table has it, a typed null where it does not.
#}
{% macro optional_column(relation, column, data_type) -%}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- for c in adapter.get_columns_in_relation(relation) -%}
            {%- if c.name | lower == column | lower -%}{%- do present.append(c.name) -%}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if present -%}{{ adapter.quote(present[0]) }}{%- else -%}cast(null as {{ data_type }}){%- endif -%}
{%- endmacro %}
