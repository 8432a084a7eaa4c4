-- Product usage per customer over the windows before the as-of date ([as_of - N days,
-- as_of)), from the incremental daily user activity.
-- A table, not a view: it reads every user-day; as a view its two key tests and customers
-- each read them again (7 s apiece at `large`).
{{ config(materialized='table') }}

with crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
),

user_days as (
    select crosswalk.customer_id, user_days.*
    from {{ ref('int_usage_user_days') }} as user_days
    inner join crosswalk
        on user_days.workspace_id = crosswalk.workspace_id
),

activity as (
    select
        customer_id,
        cast(sum(events) as bigint) as events_total,
        cast(sum(events) filter (where activity_date >= {{ as_of_date() }} - interval 30 day) as bigint) as events_30d,
        cast(sum(events) filter (
            where activity_date >= {{ as_of_date() }} - interval 60 day
            and activity_date < {{ as_of_date() }} - interval 30 day
        ) as bigint) as events_prev_30d,
        count(distinct user_id) filter (where activity_date >= {{ as_of_date() }} - interval 7 day) as active_users_7d,
        count(distinct user_id) filter (where activity_date >= {{ as_of_date() }} - interval 30 day) as active_users_30d,
        max(last_event_at) as last_seen_at
    from user_days
    group by customer_id
),

features as (
    select customer_id, count(distinct feature) as features_used_30d
    from (
        select customer_id, unnest(features).feature as feature
        from user_days
        where activity_date >= {{ as_of_date() }} - interval 30 day
    )
    group by customer_id
)

select
    activity.customer_id,
    activity.events_total,
    coalesce(activity.events_30d, 0) as events_30d,
    coalesce(activity.events_prev_30d, 0) as events_prev_30d,
    activity.active_users_7d,
    activity.active_users_30d,
    coalesce(features.features_used_30d, 0) as features_used_30d,
    activity.last_seen_at
from activity
left join features
    on activity.customer_id = features.customer_id
