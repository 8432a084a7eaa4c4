{#
    The customer each id of one source system belongs to (see the identity_resolution doc
    block), for a model to join its facts to: one row per id of `source_system` (hubspot,
    stripe, zendesk or product), the id as `id_column` (cast to `id_type` when given: Zendesk
    ids are numbers, the crosswalk keeps every id as text) and its customer_id.
#}
{% macro customer_crosswalk(source_system, id_column, id_type=none) -%}
    {%- set source_id = 'source_id' if id_type is none else 'cast(source_id as ' ~ id_type ~ ')' -%}
    select
        {{ source_id }} as {{ id_column }},
        customer_id
    from {{ ref('int_identity_resolution') }}
    where source_system = '{{ source_system }}'
{%- endmacro %}

{#
    A CRM field of a customer (an aggregate over its HubSpot companies joined to their
    crosswalk rows): the surviving company's value, or, where the survivor leaves the field
    empty, the earliest-created duplicate's that has one (ties to the lowest company id).
#}
{% macro surviving_company_value(column, companies='companies', crosswalk='crosswalk') -%}
    {{ arg_min(
        companies ~ '.' ~ column,
        [crosswalk ~ ".match_rule <> 'crm_company'", companies ~ '.created_at', byte_order(companies ~ '.company_id')],
        filter=companies ~ '.' ~ column ~ ' is not null'
    ) }}
{%- endmacro %}
