-- Daily adoption of each product feature; see the feature_adoption doc block.
--
-- Incremental by what changed: a run recomputes, whole, the days of the user-days and usage
-- events written since its last run (new and late calls, calls placed in another account or
-- customer, days the as-of instant has passed), and every day of a month whose paying
-- customers changed (paying_digest). Other days keep their rows.
-- depends_on: {{ ref('usage_events') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        on_schema_change='append_new_columns',
        post_hook="delete from {{ this }} where activity_date >= {{ as_of_date() }}",
    )
}}
{% set incremental = is_incremental_with(['paying_digest', 'refreshed_at']) %}

with crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
),

paying as (
    select customer_id, month from {{ ref('mrr_by_customer_month') }}
),

eligible as (
    select
        month,
        count(*) as eligible_customers,
        -- Which customers paid in the month, as one number: its rows change when they do.
        {{ set_digest('customer_id') }} as paying_digest
    from paying
    group by month
),

{% if incremental %}
    last_run as (
        select max(refreshed_at) as refreshed_at from {{ this }}
    ),

    recompute as (
        select activity_date from {{ ref('int_usage_user_days') }}
        where refreshed_at > (select refreshed_at from last_run)
        union
        select cast(occurred_at as date) from {{ ref('usage_events') }}
        where refreshed_at > (select refreshed_at from last_run)
        union
        select stored.activity_date
        from {{ this }} as stored
        left join eligible
            on eligible.month = cast({{ dbt.date_trunc('month', 'stored.activity_date') }} as date)
        where stored.paying_digest is distinct from eligible.paying_digest
    ),
{% endif %}

used as (
    -- Each user's features of each day (int_usage_user_days keeps only well-named ones).
    select
        user_days.activity_date,
        {{ unnest_features('user_days.features') }} as used,
        user_days.user_id,
        crosswalk.customer_id
    from {{ ref('int_usage_user_days') }} as user_days
    inner join crosswalk
        on user_days.workspace_id = crosswalk.workspace_id
    {% if incremental %}
        where user_days.activity_date in (select activity_date from recompute)
    {% endif %}
),

events as (
    select
        activity_date,
        {{ feature_field('used', 'feature') }} as feature,
        {{ feature_field('used', 'events') }} as events,
        user_id,
        customer_id
    from used
),

-- Counted in two steps, customers first and then whether each paid that month: one grouping
-- of every event row joined to the paying months fails at `large` in DuckDB 2.0.0 ("global
-- dictionary column changed identity after being seeded for dictionary caching").
customer_features as (
    select activity_date, feature, customer_id, sum(events) as events
    from events
    group by activity_date, feature, customer_id
),

users as (
    select activity_date, feature, count(distinct user_id) as users_using
    from events
    group by activity_date, feature
),

customers_using as (
    -- Counted, not counted distinct: customer_features has one row per day, feature and
    -- customer, and mrr_by_customer_month one per customer and month (both keys are tested),
    -- so the join repeats no customer. A distinct count of nine million rows cost 4 s at `large`.
    select
        customer_features.activity_date,
        customer_features.feature,
        count(*) as customers_using,
        count(*) filter (where paying.customer_id is not null) as paying_customers_using,
        cast(sum(customer_features.events) as bigint) as events
    from customer_features
    left join paying
        on customer_features.customer_id = paying.customer_id
        and paying.month = cast({{ dbt.date_trunc('month', 'customer_features.activity_date') }} as date)
    group by customer_features.activity_date, customer_features.feature
),

usage as (
    select
        customers_using.activity_date,
        customers_using.feature,
        customers_using.customers_using,
        customers_using.paying_customers_using,
        users.users_using,
        customers_using.events
    from customers_using
    inner join users
        on customers_using.activity_date = users.activity_date
        and customers_using.feature = users.feature
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
    cast(usage.paying_customers_using as {{ type_double() }}) / nullif(eligible.eligible_customers, 0) as adoption_rate,
    eligible.paying_digest,
    {{ refreshed_at() }} as refreshed_at
from usage
left join eligible
    on eligible.month = cast({{ dbt.date_trunc('month', 'usage.activity_date') }} as date)
