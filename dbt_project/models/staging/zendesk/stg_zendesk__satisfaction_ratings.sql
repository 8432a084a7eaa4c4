select
    id as satisfaction_rating_id,
    ticket_id,
    requester_id,
    -- Not in Zendesk's API reference (some accounts send it): the ticket's organization is the
    -- one to use (int_support_by_customer falls back to it).
    organization_id,
    {{ clean_enum('score') }} as score,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at
from {{ source('zendesk', 'satisfaction_ratings') }}
-- Only describes its ticket: leaves with a deleted one (see "Deletes" in docs.md).
where
    ticket_id not in (
        select id from {{ source('zendesk', 'tickets') }}
        where {{ clean_enum('status') }} = 'deleted'
    )
