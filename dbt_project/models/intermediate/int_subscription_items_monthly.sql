-- Revenue months of each subscription item; see the mrr doc block for the rules.

with items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
),

products as (
    select * from {{ ref('stg_stripe__products') }}
),

items_with_terms as (
    select
        items.subscription_item_id,
        items.subscription_id,
        subscriptions.stripe_customer_id,
        items.price_id,
        items.product_id,
        products.plan_tier,
        items.currency,
        items.quantity,
        items.unit_amount,
        items.billing_interval,
        items.billing_interval_count,
        {{ monthly_amount('items.unit_amount * items.quantity', 'items.billing_interval', 'items.billing_interval_count') }} as mrr_local,
        -- Paid service starts when the trial ends; trial months are not revenue.
        coalesce(subscriptions.trial_ended_at, subscriptions.started_at) as paid_started_at,
        subscriptions.ended_at
    from items
    inner join subscriptions
        on items.subscription_id = subscriptions.subscription_id
    left join products
        on items.product_id = products.product_id
),

revenue_spans as (
    select
        *,
        cast(date_trunc('month', paid_started_at) as date) as first_month,
        cast(
            least(
                date_trunc('month', coalesce(ended_at, {{ as_of_timestamp() }})),
                {{ as_of_month() }}
            ) as date
        ) as last_month
    from items_with_terms
    where
        -- still in trial at the as-of instant
        paid_started_at < {{ as_of_timestamp() }}
        -- cancelled before the trial ended: never paid
        and (ended_at is null or ended_at > paid_started_at)
),

months as (
    select
        *,
        cast(unnest(generate_series(first_month, last_month, interval 1 month)) as date) as month
    from revenue_spans
)

select
    subscription_item_id || ':' || strftime(month, '%Y-%m') as subscription_item_month_id,
    month,
    subscription_item_id,
    subscription_id,
    stripe_customer_id,
    price_id,
    product_id,
    plan_tier,
    currency,
    quantity,
    unit_amount,
    billing_interval,
    billing_interval_count,
    mrr_local,
    paid_started_at,
    ended_at
from months
