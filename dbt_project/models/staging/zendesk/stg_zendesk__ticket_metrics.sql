select
    id as ticket_metric_id,
    ticket_id,
    replies,
    reopens,
    -- Zendesk reports durations in calendar and business minutes, null until they happen.
    reply_time_in_minutes__calendar as first_reply_minutes,
    reply_time_in_minutes__business as first_reply_business_minutes,
    first_resolution_time_in_minutes__calendar as first_resolution_minutes,
    full_resolution_time_in_minutes__calendar as full_resolution_minutes,
    full_resolution_time_in_minutes__business as full_resolution_business_minutes,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    {{ to_utc_timestamp('solved_at') }} as solved_at
from {{ source('zendesk', 'ticket_metrics') }}
-- Only describes its ticket: leaves with a deleted one (see "Deletes" in docs.md).
where
    ticket_id not in (
        select id from {{ source('zendesk', 'tickets') }}
        where {{ clean_enum('status') }} = 'deleted'
    )
