select
    ticket_id || ':' || id as ticket_custom_field_id,
    ticket_id,
    id as custom_field_id,
    {{ clean_string('value') }} as value
from {{ source('zendesk', 'tickets__custom_fields') }}
