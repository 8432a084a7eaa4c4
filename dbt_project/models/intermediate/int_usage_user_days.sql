-- What each product user did each day; the base every usage measure is counted from. Only
-- product events count (track, page, screen), in the account int_usage_events gives them.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['activity_date', 'workspace_id', 'user_id'],
        on_schema_change='fail',
    )
}}

with per_event_name as (
    select
        workspace_id,
        user_id,
        cast(occurred_at as date) as activity_date,
        event_name,
        count(*) as events,
        min(occurred_at) as first_event_at,
        max(occurred_at) as last_event_at
    from {{ ref('int_usage_events') }}
    where
        is_product_event
        and occurred_at < {{ as_of_timestamp() }}
        and workspace_id is not null
        and user_id is not null
        {% if is_incremental() %}
        -- Events arrive up to `usage_lookback_days` late: those days are computed again.
            and occurred_at >= (
                select max(activity_date) - interval {{ var('usage_lookback_days') }} day from {{ this }}
            )
        {% endif %}
    group by all
)

select
    workspace_id,
    user_id,
    activity_date,
    cast(sum(events) as bigint) as events,
    -- Only names that follow <domain>.<action>.<object> are features; the others are defects
    -- the quality checks report.
    coalesce(
        list({ 'feature': event_name, 'events': events } order by event_name) filter (
            where regexp_full_match(event_name, '[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+')
        ),
        []
    ) as features,
    min(first_event_at) as first_event_at,
    max(last_event_at) as last_event_at
from per_event_name
group by workspace_id, user_id, activity_date
