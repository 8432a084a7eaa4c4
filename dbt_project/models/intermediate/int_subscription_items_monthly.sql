-- The terms of each subscription item in force at the close of each month; see the mrr doc
-- block: a month's MRR is what is contracted at its last instant (for the as-of month, at
-- the as-of instant itself, so a term starting exactly then counts and one ending exactly
-- then does not).
-- A table, not a view: three marts, a singular test and its own tests read it; as a view
-- each of them computed every item's months again.
{{ config(materialized='table') }}

with terms as (
    select * from {{ ref('int_subscription_item_terms') }}
),

plan_tiers as (
    select price_id, plan_tier from {{ ref('int_stripe__price_plan_tiers') }}
),

candidate_months as (
    select
        terms.*,
        {{ month_series('cast(' ~ dbt.date_trunc('month', 'terms.effective_from') ~ ' as date)', as_of_month()) }} as month
    from terms
    where terms.effective_from <= {{ as_of_timestamp() }}
),

in_force as (
    select
        *,
        least(cast({{ dbt.dateadd('month', 1, 'month') }} as timestamp), {{ as_of_timestamp() }}) as month_close
    from candidate_months
),

-- Now, the item as it stands: Stripe changes the item at once when the plan changes, while
-- the invoice line (`proration_behavior: none`) catches up only at the renewal.
current_items as (
    select
        items.subscription_item_id,
        items.price_id,
        items.product_id,
        items.quantity,
        items.unit_amount,
        items.billing_interval,
        items.billing_interval_count,
        cast(items.unit_amount * items.quantity as decimal(18, 2)) as gross_amount,
        -- The subscription's recurring discounts applying now: percentages off the item, plus
        -- amounts off (per invoice, so an item takes at most its own amount).
        {{ double_to_decimal(
            'least(
                items.unit_amount * items.quantity * coalesce(discounts.recurring_percent_off, 0) / 100
                + coalesce(discounts.recurring_amount_off, 0),
                items.unit_amount * items.quantity
            )',
            18, 2
        ) }} as recurring_discount
    from {{ ref('stg_stripe__subscription_items') }} as items
    left join {{ ref('int_stripe__subscription_discounts') }} as discounts
        on items.subscription_id = discounts.subscription_id
),

closes as (
    select
        in_force.month,
        in_force.month_close,
        in_force.subscription_item_id,
        in_force.subscription_item_term_id,
        in_force.subscription_id,
        in_force.stripe_customer_id,
        in_force.invoice_id,
        in_force.invoice_status,
        in_force.term_source,
        in_force.currency,
        in_force.is_paused,
        in_force.one_off_discount,
        in_force.billed_until,
        in_force.effective_from,
        in_force.effective_to,
        coalesce(now.price_id, in_force.price_id) as price_id,
        coalesce(now.product_id, in_force.product_id) as product_id,
        coalesce(now.quantity, in_force.quantity) as quantity,
        coalesce(now.unit_amount, in_force.unit_amount) as unit_amount,
        coalesce(now.billing_interval, in_force.billing_interval) as billing_interval,
        coalesce(now.billing_interval_count, in_force.billing_interval_count) as billing_interval_count,
        coalesce(now.gross_amount, in_force.gross_amount) as gross_amount,
        coalesce(now.recurring_discount, in_force.recurring_discount) as recurring_discount,
        now.subscription_item_id is not null as is_current_item,
        -- What the invoice line in force bills per month, whatever the item says now.
        case
            when in_force.is_paused then cast(0 as decimal(18, 6))
            else {{ monthly_amount('in_force.gross_amount - in_force.recurring_discount', 'in_force.billing_interval', 'in_force.billing_interval_count') }}
        end as line_mrr_local
    from in_force
    left join current_items as now
        on in_force.subscription_item_id = now.subscription_item_id
        -- the as-of month of a term still running (a pause keeps its voided invoice's terms)
        and in_force.month = {{ as_of_month() }}
        and in_force.effective_to is null
        and not in_force.is_paused
)

select
    closes.subscription_item_id || ':' || {{ format_timestamp('closes.month', '%Y-%m') }} as subscription_item_month_id,
    closes.month,
    closes.month_close,
    closes.subscription_item_id,
    closes.subscription_item_term_id,
    closes.subscription_id,
    closes.stripe_customer_id,
    closes.invoice_id,
    closes.invoice_status,
    closes.term_source,
    closes.price_id,
    closes.product_id,
    coalesce(plan_tiers.plan_tier, 'unmapped') as plan_tier,
    closes.currency,
    closes.quantity,
    closes.unit_amount,
    closes.billing_interval,
    closes.billing_interval_count,
    closes.is_paused,
    closes.is_current_item,
    -- Paused: nothing is billed or owed while the pause lasts, so no MRR either.
    case
        when closes.is_paused then cast(0 as decimal(18, 6))
        else {{ monthly_amount('closes.gross_amount', 'closes.billing_interval', 'closes.billing_interval_count') }}
    end as gross_mrr_local,
    case
        when closes.is_paused then cast(0 as decimal(18, 6))
        else {{ monthly_amount('closes.recurring_discount', 'closes.billing_interval', 'closes.billing_interval_count') }}
    end as discount_mrr_local,
    case
        when closes.is_paused then cast(0 as decimal(18, 6))
        else {{ monthly_amount('closes.gross_amount - closes.recurring_discount', 'closes.billing_interval', 'closes.billing_interval_count') }}
    end as mrr_local,
    closes.line_mrr_local,
    {{ monthly_amount('closes.one_off_discount', 'closes.billing_interval', 'closes.billing_interval_count') }} as one_off_discount_mrr_local,
    closes.billed_until,
    closes.effective_from,
    closes.effective_to
from closes
left join plan_tiers
    on closes.price_id = plan_tiers.price_id
where
    case
        -- The as-of instant is an instant: in force at it means started at or before it and
        -- not yet ended (a cancellation at period end, midnight UTC, is churn that month).
        when closes.month = {{ as_of_month() }}
            then
                closes.effective_from <= closes.month_close
                and (closes.effective_to is null or closes.effective_to > closes.month_close)
        -- A past month's close is the end of its last instant: whatever ran until then counts.
        else
            closes.effective_from < closes.month_close
            and (closes.effective_to is null or closes.effective_to >= closes.month_close)
    end
