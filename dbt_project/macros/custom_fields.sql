{#
    A field the account names itself (a Stripe metadata key, a HubSpot custom property, a
    Zendesk custom field): which key means what is configuration, the dbt var `var_name` (a
    mapping of meanings to the account's keys), so the models never assume one account's names.
    The raw column holding them is JSON (declared in the source's raw contract); a meaning the
    var leaves unset, or a key a record does not have, reads as null.
#}
{% macro custom_field(json_column, var_name, meaning) -%}
    {%- set key = (var(var_name, {}) or {}).get(meaning) -%}
    {%- if key is none or (key | string | trim) == '' -%}
        cast(null as varchar)
    {%- else -%}
        nullif(trim({{ json_text(json_column, key | replace('"', '') | replace("'", '')) }}), '')
    {%- endif -%}
{%- endmacro %}
