-- What each product user did each day; the base every usage measure is counted from. Only
-- product events count (track, page, screen), in the account int_usage_events gives them.
--
-- Incremental by what changed, not by a window: a run recomputes the user-days of the calls
-- loaded since its last run (late ones included, however late), every day of a user or
-- device a new group or identify call may have moved to another account, and the days the
-- as-of instant passed since (a client clock ahead of it). Each such user-day is replaced
-- whole, in every workspace, so a call that moved leaves its old workspace's row.
-- depends_on: {{ ref('stg_usage_events__events') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'activity_date'],
        on_schema_change='append_new_columns',
        post_hook="delete from {{ this }} where activity_date >= {{ as_of_date() }}",
    )
}}
{% set incremental = is_incremental_with(['last_load_id', 'refreshed_at']) %}

with events as (
    select * from {{ ref('int_usage_events') }}
    where
        is_product_event
        and occurred_at < {{ as_of_timestamp() }}
        and workspace_id is not null
        and user_id is not null
),

{% if incremental %}
    staged as (
        select event_id, event_type, user_id, anonymous_id, workspace_id, occurred_at, load_id
        from {{ ref('stg_usage_events__events') }}
    ),

    -- A group or identify call naming a workspace can give its user's or device's other calls
    -- another account (int_usage_user_accounts).
    placed as (
        select user_id, anonymous_id from staged
        where
            {{ byte_order('load_id') }} > (select coalesce(max({{ byte_order('last_load_id') }}), '') from {{ this }})
            and workspace_id is not null
            and event_type in ('group', 'identify')
    ),

    affected as (
        select distinct user_id, cast(occurred_at as date) as activity_date
        from staged
        where
            user_id is not null
            and (
                {{ byte_order('load_id') }} > (select coalesce(max({{ byte_order('last_load_id') }}), '') from {{ this }})
                -- after the newest stored day: the as-of instant may have passed them since
                or occurred_at >= (select {{ dbt.dateadd('day', 1, 'max(activity_date)') }} from {{ this }})
                or (
                    workspace_id is null
                    and (
                        user_id in (select user_id from placed)
                        or anonymous_id in (select anonymous_id from placed)
                    )
                )
            )
    ),
{% endif %}

per_event_name as (
    select
        events.workspace_id,
        events.user_id,
        cast(events.occurred_at as date) as activity_date,
        events.event_name,
        count(*) as events,
        min(events.occurred_at) as first_event_at,
        max(events.occurred_at) as last_event_at,
        {{ byte_order_max('events.load_id') }} as last_load_id
    from events
    {% if incremental %}
        inner join affected
            on events.user_id = affected.user_id
            and cast(events.occurred_at as date) = affected.activity_date
    {% endif %}
    group by events.workspace_id, events.user_id, cast(events.occurred_at as date), events.event_name
)

select
    workspace_id,
    user_id,
    activity_date,
    cast(sum(events) as bigint) as events,
    -- Only names that follow <domain>.<action>.<object> are features; the others are defects
    -- the quality checks report.
    -- Sorted after aggregating (by feature: the struct's first field), not with an ordered
    -- aggregate, which holds every group's input at once: at scale it ran out of memory.
    {{ feature_list_agg('event_name', 'events', regexp_full_match('event_name', '[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+')) }}
        as features,
    min(first_event_at) as first_event_at,
    max(last_event_at) as last_event_at,
    {{ byte_order_max('last_load_id') }} as last_load_id,
    {{ refreshed_at() }} as refreshed_at
from per_event_name
group by workspace_id, user_id, activity_date
