-- Daily adoption of each product feature; see the feature_adoption doc block.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['activity_date', 'feature'],
        on_schema_change='fail',
    )
}}

with identity as (
    select customer_id, workspace_id from {{ ref('int_customer_identity') }}
    where workspace_id is not null
),

events as (
    select
        cast(events.occurred_at as date) as activity_date,
        events.event_name as feature,
        events.user_id,
        identity.customer_id
    from {{ ref('stg_usage__events') }} as events
    inner join identity
        on events.workspace_id = identity.workspace_id
    where
        events.occurred_at < {{ as_of_timestamp() }}
        -- Only names that follow <domain>.<action>.<object> are features; the others are
        -- defects the quality checks report.
        and regexp_full_match(events.event_name, '[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+')
        {% if is_incremental() %}
        -- Events arrive up to `usage_lookback_days` late: those days are computed again.
        and events.occurred_at >= (
            select max(activity_date) - interval {{ var('usage_lookback_days') }} day from {{ this }}
        )
        {% endif %}
),

paying as (
    select customer_id, month from {{ ref('mrr_by_customer_month') }}
),

eligible as (
    select month, count(*) as eligible_customers from paying group by month
),

usage as (
    select
        events.activity_date,
        events.feature,
        count(distinct events.customer_id) as customers_using,
        count(distinct events.customer_id) filter (where paying.customer_id is not null) as paying_customers_using,
        count(distinct events.user_id) as users_using,
        count(*) as events
    from events
    left join paying
        on events.customer_id = paying.customer_id
        and paying.month = date_trunc('month', events.activity_date)
    group by events.activity_date, events.feature
)

select
    usage.activity_date,
    usage.feature,
    split_part(usage.feature, '.', 1) as feature_area,
    usage.customers_using,
    usage.paying_customers_using,
    usage.users_using,
    usage.events,
    coalesce(eligible.eligible_customers, 0) as eligible_customers,
    cast(usage.paying_customers_using as double) / nullif(eligible.eligible_customers, 0) as adoption_rate
from usage
left join eligible
    on eligible.month = date_trunc('month', usage.activity_date)
