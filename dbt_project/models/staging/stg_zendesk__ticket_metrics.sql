{%- set metrics = source('zendesk', 'ticket_metrics') %}
select
    id as ticket_metric_id,
    ticket_id,
    replies,
    reopens,
    -- Zendesk reports durations in calendar and business minutes, null until they happen
    -- (an account whose tickets have none yet has no such column).
    {{ optional_column(metrics, 'reply_time_in_minutes__calendar', 'bigint') }} as first_reply_minutes,
    {{ optional_column(metrics, 'reply_time_in_minutes__business', 'bigint') }} as first_reply_business_minutes,
    {{ optional_column(metrics, 'first_resolution_time_in_minutes__calendar', 'bigint') }} as first_resolution_minutes,
    {{ optional_column(metrics, 'full_resolution_time_in_minutes__calendar', 'bigint') }} as full_resolution_minutes,
    {{ optional_column(metrics, 'full_resolution_time_in_minutes__business', 'bigint') }} as full_resolution_business_minutes,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    {{ to_utc_timestamp(optional_column(metrics, 'solved_at', 'timestamptz')) }} as solved_at
from {{ metrics }}
