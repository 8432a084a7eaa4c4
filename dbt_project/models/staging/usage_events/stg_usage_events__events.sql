-- Incremental: a run types only the events of loads it has not seen, so a daily run costs
-- in proportion to the new events, not to the history.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
    )
}}

with raw as (
    select * from {{ source('usage_events', 'events') }}
    -- Rows the loader flagged wait in raw only until their lines are quarantined.
    where _rejected is not true
        {% if is_incremental() %}
            and {{ byte_order('_dlt_load_id') }} > (select coalesce(max({{ byte_order('load_id') }}), '') from {{ this }})
        {% endif %}
),

-- The loader stores each message id once; an event re-sent inside one batch of files with
-- other content is the one case it lets through, so the first delivery wins here too.
deliveries as (
    select
        *,
        row_number() over (
            partition by message_id order by _dlt_load_id, {{ byte_order('_file_name') }}
        ) as delivery
    from raw
    {% if is_incremental() %}
        -- The first delivery of a message stands: one staged before is not taken again. (Not
        -- exists rather than not in: PostgreSQL runs a not in over a large table row by row.)
        where not exists (select 1 from {{ this }} as staged where staged.event_id = raw.message_id)
    {% endif %}
)

select
    message_id as event_id,
    {{ clean_enum('type') }} as event_type,
    {{ clean_enum('event') }} as event_name,
    -- Track event names follow <domain>.<action>.<object>; page and screen names do not.
    case when {{ clean_enum('type') }} = 'track' then split_part({{ clean_enum('event') }}, '.', 1) end as event_domain,
    {{ clean_string('user_id') }} as user_id,
    {{ clean_string('anonymous_id') }} as anonymous_id,
    {{ clean_string('account_id') }} as workspace_id,
    lower({{ json_text('properties', 'plan') }}) as plan_tier,
    traits,
    {{ to_utc_timestamp('"timestamp"') }} as occurred_at,
    {{ to_utc_timestamp('received_at') }} as received_at,
    format as event_format,
    _file_name as source_file_name,
    _dlt_load_id as load_id,
    {{ refreshed_at() }} as refreshed_at
from deliveries
where delivery = 1
