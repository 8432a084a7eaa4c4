-- Product usage per customer over the windows before the as-of date ([as_of - N days,
-- as_of)), from the incremental daily user activity.
-- A table, not a view: it reads every user-day; as a view its two key tests and customers
-- each read them again (7 s apiece at `large`).
{{ config(materialized='table') }}

with crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
),

-- The whole history is summed per workspace before it meets its customers: a sum and a max
-- that need no user-day joined to a customer (joining every user-day first took 2.5 s at
-- `large`, this 0.1 s). Only the last 60 days are counted user by user.
workspace_totals as (
    select
        workspace_id,
        sum(events) as events_total,
        max(last_event_at) as last_seen_at
    from {{ ref('int_usage_user_days') }}
    group by workspace_id
),

lifetime as (
    select
        crosswalk.customer_id,
        cast(sum(workspace_totals.events_total) as bigint) as events_total,
        max(workspace_totals.last_seen_at) as last_seen_at
    from workspace_totals
    inner join crosswalk
        on workspace_totals.workspace_id = crosswalk.workspace_id
    group by crosswalk.customer_id
),

recent as (
    select crosswalk.customer_id, user_days.*
    from {{ ref('int_usage_user_days') }} as user_days
    inner join crosswalk
        on user_days.workspace_id = crosswalk.workspace_id
    where user_days.activity_date >= {{ dbt.dateadd('day', -60, as_of_date()) }}
),

activity as (
    select
        customer_id,
        cast(sum(events) filter (where activity_date >= {{ dbt.dateadd('day', -30, as_of_date()) }}) as bigint) as events_30d,
        cast(sum(events) filter (where activity_date < {{ dbt.dateadd('day', -30, as_of_date()) }}) as bigint)
            as events_prev_30d,
        count(distinct user_id) filter (where activity_date >= {{ dbt.dateadd('day', -7, as_of_date()) }}) as active_users_7d,
        count(distinct user_id) filter (where activity_date >= {{ dbt.dateadd('day', -30, as_of_date()) }}) as active_users_30d
    from recent
    group by customer_id
),

features as (
    select customer_id, count(distinct {{ feature_field('used', 'feature') }}) as features_used_30d
    from (
        select customer_id, {{ unnest_features('features') }} as used
        from recent
        where activity_date >= {{ dbt.dateadd('day', -30, as_of_date()) }}
    ) as feature_days
    group by customer_id
)

select
    lifetime.customer_id,
    lifetime.events_total,
    coalesce(activity.events_30d, 0) as events_30d,
    coalesce(activity.events_prev_30d, 0) as events_prev_30d,
    coalesce(activity.active_users_7d, 0) as active_users_7d,
    coalesce(activity.active_users_30d, 0) as active_users_30d,
    coalesce(features.features_used_30d, 0) as features_used_30d,
    lifetime.last_seen_at
from lifetime
left join activity
    on lifetime.customer_id = activity.customer_id
left join features
    on lifetime.customer_id = features.customer_id
