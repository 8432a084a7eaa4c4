with fields as (
    select * from {{ source('zendesk', 'tickets__custom_fields') }}
),

tickets as (
    select id, _dlt_id from {{ source('zendesk', 'tickets') }}
)

select
    tickets.id || ':' || fields.id as ticket_custom_field_id,
    tickets.id as ticket_id,
    fields.id as custom_field_id,
    {{ clean_string('fields.value') }} as value
from fields
left join tickets
    on fields._dlt_parent_id = tickets._dlt_id
