select
    message_id as event_id,
    {{ clean_enum('type') }} as event_type,
    {{ clean_enum('event') }} as event_name,
    -- Event names follow <domain>.<action>.<object>.
    split_part({{ clean_enum('event') }}, '.', 1) as event_domain,
    {{ clean_string('user_id') }} as user_id,
    {{ clean_string('account_id') }} as workspace_id,
    lower(properties ->> 'plan') as plan_tier,
    {{ to_utc_timestamp('"timestamp"') }} as occurred_at,
    {{ to_utc_timestamp('received_at') }} as received_at,
    _file_name as source_file_name
from {{ source('usage_events', 'events') }}
