-- Daily adoption of each product feature; see the feature_adoption doc block.
--
-- Incremental by what changed: a run recomputes, whole, the days int_usage_feature_days wrote
-- since its last run (new and late calls, calls placed in another account or customer, days
-- the as-of instant has passed), and every day of a month whose paying customers changed
-- (paying_digest). A recomputed day counts from that day's rows of int_usage_feature_days
-- (its customers, per feature), never from the user-days again: billing changes reach back
-- into most months every day, usage does not.
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

with paying as (
    select customer_id, month from {{ ref('mrr_by_customer_month') }}
),

eligible as (
    select
        month,
        count(*) as eligible_customers,
        -- Which customers paid in the month, as one number: its rows change when they do.
        bit_xor(hash(customer_id)) as paying_digest
    from paying
    group by month
),

{% if incremental %}
    last_run as (
        select max(refreshed_at) as refreshed_at from {{ this }}
    ),

    recompute as (
        select activity_date from {{ ref('int_usage_feature_days') }}
        where refreshed_at > (select refreshed_at from last_run)
        union
        select stored.activity_date
        from {{ this }} as stored
        left join eligible
            on eligible.month = date_trunc('month', stored.activity_date)
        where stored.paying_digest is distinct from eligible.paying_digest
    ),
{% endif %}

feature_days as (
    select * from {{ ref('int_usage_feature_days') }}
    {% if incremental %}
        where activity_date in (select activity_date from recompute)
    {% endif %}
),

customers_using as (
    select activity_date, feature, unnest(customer_ids) as customer_id
    from feature_days
),

-- A semi-join, not a join grouped after: grouping every customer-day joined to the paying
-- months fails at `large` in DuckDB 2.0.0 ("global dictionary column changed identity
-- after being seeded for dictionary caching").
paying_using as (
    select activity_date, feature, count(*) as paying_customers_using
    from customers_using
    where exists (
            select 1 from paying
            where
                paying.customer_id = customers_using.customer_id
                and paying.month = date_trunc('month', customers_using.activity_date)
        )
    group by activity_date, feature
)

select
    feature_days.activity_date,
    feature_days.feature,
    split_part(feature_days.feature, '.', 1) as feature_area,
    cast(len(feature_days.customer_ids) as bigint) as customers_using,
    coalesce(paying_using.paying_customers_using, 0) as paying_customers_using,
    feature_days.users_using,
    feature_days.events,
    coalesce(eligible.eligible_customers, 0) as eligible_customers,
    cast(coalesce(paying_using.paying_customers_using, 0) as double)
    / nullif(eligible.eligible_customers, 0) as adoption_rate,
    eligible.paying_digest,
    {{ refreshed_at() }} as refreshed_at
from feature_days
left join paying_using
    on feature_days.activity_date = paying_using.activity_date
    and feature_days.feature = paying_using.feature
left join eligible
    on eligible.month = date_trunc('month', feature_days.activity_date)
