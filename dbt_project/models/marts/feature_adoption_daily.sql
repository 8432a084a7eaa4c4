-- Daily adoption of each product feature; see the feature_adoption doc block.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['activity_date', 'feature'],
        on_schema_change='fail',
    )
}}

with crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
),

used as (
    -- Each user's features of each day (int_usage_user_days keeps only well-named ones).
    select
        user_days.activity_date,
        unnest(user_days.features) as used,
        user_days.user_id,
        crosswalk.customer_id
    from {{ ref('int_usage_user_days') }} as user_days
    inner join crosswalk
        on user_days.workspace_id = crosswalk.workspace_id
    {% if is_incremental() %}
        -- Events arrive up to `usage_lookback_days` late: those days are computed again.
        where
            user_days.activity_date >= (
                select max(activity_date) - interval {{ var('usage_lookback_days') }} day from {{ this }}
            )
    {% endif %}
),

events as (
    select activity_date, used.feature, used.events, user_id, customer_id
    from used
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
        cast(sum(events.events) as bigint) as events
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
