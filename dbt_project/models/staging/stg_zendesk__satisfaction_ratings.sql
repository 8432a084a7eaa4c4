select
    id as satisfaction_rating_id,
    ticket_id,
    requester_id,
    organization_id,
    {{ clean_enum('score') }} as score,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at
from {{ source('zendesk', 'satisfaction_ratings') }}
