-- A customer can hold several subscriptions over time (a lapsed one and its replacement);
-- the one describing the customer is the one currently in force, else the latest.

with subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
),

items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

products as (
    select * from {{ ref('stg_stripe__products') }}
),

subscription_tiers as (
    -- The plan of a subscription is its largest item by monthly amount.
    select
        items.subscription_id,
        arg_max(
            products.plan_tier,
            ({{ monthly_amount('items.unit_amount * items.quantity', 'items.billing_interval', 'items.billing_interval_count') }}, items.subscription_item_id)
        ) as plan_tier
    from items
    left join products
        on items.product_id = products.product_id
    group by items.subscription_id
),

normalised as (
    select
        subscriptions.*,
        subscription_tiers.plan_tier,
        case
            -- past_due and unpaid subscriptions are still contracted, only in dunning
            when subscriptions.status in ('active', 'past_due', 'unpaid') then 'active'
            when subscriptions.status = 'trialing' then 'trialing'
            -- incomplete: the first payment never succeeded, so it never took effect
            when subscriptions.status = 'incomplete' then 'none'
            else 'canceled'
        end as normalised_status
    from subscriptions
    left join subscription_tiers
        on subscriptions.subscription_id = subscription_tiers.subscription_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by stripe_customer_id
            order by
                case normalised_status
                    when 'active' then 1
                    when 'trialing' then 2
                    when 'canceled' then 3
                    else 4
                end,
                started_at desc,
                subscription_id
        ) as relevance_rank
    from normalised
),

per_customer as (
    select
        stripe_customer_id,
        count(*) as subscription_count,
        min(started_at) as first_subscription_at,
        max(greatest(created_at, canceled_at, ended_at)) as last_subscription_change_at
    from subscriptions
    group by stripe_customer_id
)

select
    ranked.stripe_customer_id,
    ranked.subscription_id as current_subscription_id,
    ranked.normalised_status as subscription_status,
    ranked.status as stripe_status,
    ranked.plan_tier,
    ranked.currency,
    per_customer.subscription_count,
    per_customer.first_subscription_at,
    per_customer.last_subscription_change_at
from ranked
inner join per_customer
    on ranked.stripe_customer_id = per_customer.stripe_customer_id
where ranked.relevance_rank = 1
