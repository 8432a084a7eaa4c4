select
    ticket_id || ':' || id as ticket_custom_field_id,
    ticket_id,
    id as custom_field_id,
    {{ clean_string('value') }} as value
from {{ source('zendesk', 'tickets__custom_fields') }}
-- Only describes its ticket: leaves with a deleted one (see "Deletes" in docs.md).
where
    ticket_id not in (
        select id from {{ source('zendesk', 'tickets') }}
        where {{ clean_enum('status') }} = 'deleted'
    )
