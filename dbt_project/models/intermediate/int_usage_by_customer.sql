-- Events after the as-of instant are ignored so that a rebuild for a past day is stable.

with identity as (
    select * from {{ ref('int_customer_identity') }}
),

events as (
    select * from {{ ref('stg_usage__events') }}
    where occurred_at < {{ as_of_timestamp() }}
),

workspace_stats as (
    select
        workspace_id,
        count(*) as events_total,
        count(*) filter (
            where occurred_at >= {{ as_of_timestamp() }} - interval 30 day
        ) as events_30d,
        count(distinct user_id) filter (
            where occurred_at >= {{ as_of_timestamp() }} - interval 30 day
        ) as active_users_30d,
        max(occurred_at) as last_seen_at
    from events
    group by workspace_id
)

select
    identity.customer_id,
    identity.workspace_id,
    coalesce(workspace_stats.events_total, 0) as events_total,
    coalesce(workspace_stats.events_30d, 0) as events_30d,
    coalesce(workspace_stats.active_users_30d, 0) as active_users_30d,
    workspace_stats.last_seen_at
from identity
left join workspace_stats
    on identity.workspace_id = workspace_stats.workspace_id
