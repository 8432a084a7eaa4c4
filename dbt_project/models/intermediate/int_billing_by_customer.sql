-- Billing facts per customer, across all the Stripe customers it holds. A customer can hold
-- several subscriptions over time (a lapsed one and its replacement); the one describing
-- the customer is the one currently in force, else the latest. Amounts are in USD.
-- A table, not a view: its tests and customers each computed it again as a view.
{{ config(materialized='table') }}

with crosswalk as (
    {{ customer_crosswalk('stripe', 'stripe_customer_id') }}
),

subscriptions as (
    select crosswalk.customer_id, subscriptions.*
    from {{ ref('stg_stripe__subscriptions') }} as subscriptions
    inner join crosswalk
        on subscriptions.stripe_customer_id = crosswalk.stripe_customer_id
    where subscriptions.started_at < {{ as_of_timestamp() }}
),

items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

plan_tiers as (
    select price_id, plan_tier from {{ ref('int_stripe__price_plan_tiers') }}
),

subscription_plans as (
    -- The plan of a subscription is its largest item by monthly amount.
    select
        items.subscription_id,
        {{ arg_max(
            "coalesce(plan_tiers.plan_tier, 'unmapped')",
            [
                monthly_amount('items.unit_amount * items.quantity', 'items.billing_interval', 'items.billing_interval_count'),
                byte_order('items.subscription_item_id'),
            ]
        ) }} as plan_tier,
        cast(sum(items.quantity) as bigint) as seats
    from items
    left join plan_tiers
        on items.price_id = plan_tiers.price_id
    group by items.subscription_id
),

normalised as (
    select
        subscriptions.*,
        subscription_plans.plan_tier,
        subscription_plans.seats,
        case
            -- past_due and unpaid subscriptions are still contracted, only in dunning
            when subscriptions.status in ('active', 'past_due', 'unpaid') then 'active'
            when subscriptions.status = 'trialing' then 'trialing'
            -- incomplete: the first payment never succeeded, so it never took effect
            when subscriptions.status in ('incomplete', 'incomplete_expired') then 'none'
            else 'canceled'
        end as normalised_status
    from subscriptions
    left join subscription_plans
        on subscriptions.subscription_id = subscription_plans.subscription_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id
            order by
                case normalised_status when 'active' then 1 when 'trialing' then 2 when 'canceled' then 3 else 4 end,
                started_at desc,
                {{ byte_order('subscription_id') }} asc
        ) as relevance_rank
    from normalised
),

per_customer as (
    select
        customer_id,
        count(*) as subscription_count,
        min(started_at) as first_subscription_at,
        max(started_at) as latest_subscription_at,
        max(greatest(created_at, canceled_at, ended_at)) as last_subscription_change_at
    from subscriptions
    group by customer_id
),

invoices as (
    select
        crosswalk.customer_id,
        invoices.*,
        {{ to_usd('invoices.amount_paid') }} as amount_paid_usd,
        {{ to_usd('invoices.amount_remaining') }} as amount_remaining_usd
    from {{ ref('stg_stripe__invoices') }} as invoices
    inner join crosswalk
        on invoices.stripe_customer_id = crosswalk.stripe_customer_id
    {{ join_usd_rate('invoices.currency') }}
    where invoices.created_at < {{ as_of_timestamp() }}
),

charges as (
    select crosswalk.customer_id, charges.*
    from {{ ref('int_stripe__charges') }} as charges
    inner join crosswalk
        on charges.stripe_customer_id = crosswalk.stripe_customer_id
    where charges.created_at < {{ as_of_timestamp() }}
),

refunds as (
    select charges.customer_id, sum({{ to_usd('refunds.amount') }}) as refunded
    from {{ ref('stg_stripe__refunds') }} as refunds
    inner join charges
        on refunds.charge_id = charges.charge_id
    {{ join_usd_rate('refunds.currency') }}
    where refunds.created_at < {{ as_of_timestamp() }}
    group by charges.customer_id
),

invoice_stats as (
    select
        customer_id,
        sum(amount_paid_usd) as paid,
        -- What is owed now: open invoices still in dunning (uncollectible ones are written off).
        sum(amount_remaining_usd) filter (where status = 'open') as outstanding_balance,
        count(*) filter (where status = 'open') as open_invoices,
        count(*) filter (where status = 'uncollectible') as uncollectible_invoices
    from invoices
    group by customer_id
),

charge_stats as (
    select
        customer_id,
        count(*) filter (where status = 'failed' and created_at >= {{ dbt.dateadd('day', -90, as_of_timestamp()) }}) as failed_payments_90d,
        count(*) filter (where status = 'failed') as failed_payments
    from charges
    group by customer_id
)

select
    ranked.customer_id,
    ranked.stripe_customer_id,
    ranked.subscription_id as current_subscription_id,
    ranked.normalised_status as subscription_status,
    ranked.status as stripe_status,
    ranked.plan_tier,
    ranked.seats,
    ranked.currency,
    per_customer.subscription_count,
    per_customer.first_subscription_at,
    per_customer.latest_subscription_at,
    per_customer.last_subscription_change_at,
    round(coalesce(invoice_stats.paid, 0) - coalesce(refunds.refunded, 0), 2) as lifetime_revenue,
    round(coalesce(invoice_stats.outstanding_balance, 0), 2) as outstanding_balance,
    coalesce(invoice_stats.open_invoices, 0) as open_invoices,
    coalesce(invoice_stats.uncollectible_invoices, 0) as uncollectible_invoices,
    coalesce(charge_stats.failed_payments, 0) as failed_payments,
    coalesce(charge_stats.failed_payments_90d, 0) as failed_payments_90d
from ranked
inner join per_customer
    on ranked.customer_id = per_customer.customer_id
left join invoice_stats
    on ranked.customer_id = invoice_stats.customer_id
left join refunds
    on ranked.customer_id = refunds.customer_id
left join charge_stats
    on ranked.customer_id = charge_stats.customer_id
where ranked.relevance_rank = 1
