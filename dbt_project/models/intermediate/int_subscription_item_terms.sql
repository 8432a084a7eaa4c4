-- The terms each subscription item was contracted on, from when to when; see the mrr doc
-- block. Invoice lines are the history (each bills the item as it stood when its period
-- began); an item never invoiced falls back to its current terms.
-- A table, not a view: its key and relationship tests and int_subscription_items_monthly
-- each computed it again (3 s of every run at `large`).
{{ config(materialized='table') }}

with lines as (
    select * from {{ ref('stg_stripe__invoice_lines') }}
    -- A proration bills a one-off difference, not a term (see mrr_reconciliation).
    where not is_proration and subscription_item_id is not null
),

invoices as (
    select invoice_id, status from {{ ref('stg_stripe__invoices') }}
),

-- Each line's discounts split by the kind of coupon behind them: a coupon that keeps applying
-- lowers what the customer is contracted to pay; a one-off (`once`), or a discount whose
-- coupon is unknown, is a discount on one invoice.
line_discounts as (
    select
        line_discounts.invoice_line_id,
        coalesce(sum(line_discounts.amount) filter (where discounts.is_recurring), 0) as recurring_discount
    from {{ ref('stg_stripe__invoice_line_discounts') }} as line_discounts
    left join {{ ref('int_stripe__discounts') }} as discounts
        on line_discounts.discount_id = discounts.discount_id
    group by line_discounts.invoice_line_id
),

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
),

items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

prices as (
    select price_id, billing_interval, billing_interval_count from {{ ref('stg_stripe__prices') }}
),

billed as (
    select
        lines.subscription_item_id,
        lines.subscription_id,
        lines.invoice_id,
        invoices.status as invoice_status,
        lines.price_id,
        lines.product_id,
        lines.currency,
        lines.quantity,
        lines.unit_amount,
        coalesce(prices.billing_interval, 'month') as billing_interval,
        -- A price missing from the catalogue: its interval is the line's own period.
        coalesce(
            prices.billing_interval_count,
            greatest(cast({{ dbt.datediff('lines.period_start_at', 'lines.period_end_at', 'month') }} as bigint), 1)
        ) as billing_interval_count,
        lines.amount as gross_amount,
        cast(least(coalesce(line_discounts.recurring_discount, 0), lines.discount_amount) as decimal(18, 2)) as recurring_discount,
        cast(
            lines.discount_amount - least(coalesce(line_discounts.recurring_discount, 0), lines.discount_amount)
            as decimal(18, 2)
        ) as one_off_discount,
        -- Stripe voids the invoices of a paused subscription (pause_collection: void).
        invoices.status = 'void' as is_paused,
        lines.period_start_at as effective_from,
        lines.period_end_at,
        'invoice_line' as term_source
    from lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
    left join line_discounts
        on lines.invoice_line_id = line_discounts.invoice_line_id
    left join prices
        on lines.price_id = prices.price_id
),

never_billed as (
    select
        items.subscription_item_id,
        items.subscription_id,
        cast(null as varchar) as invoice_id,
        cast(null as varchar) as invoice_status,
        items.price_id,
        items.product_id,
        items.currency,
        items.quantity,
        items.unit_amount,
        items.billing_interval,
        items.billing_interval_count,
        cast(items.unit_amount * items.quantity as decimal(18, 2)) as gross_amount,
        cast(0 as decimal(18, 2)) as recurring_discount,
        cast(0 as decimal(18, 2)) as one_off_discount,
        false as is_paused,
        -- Paid service starts when the trial ends; trial time is not revenue.
        coalesce(subscriptions.trial_ended_at, subscriptions.started_at) as effective_from,
        cast(null as timestamp) as period_end_at,
        'subscription_item' as term_source
    from items
    inner join subscriptions
        on items.subscription_id = subscriptions.subscription_id
    where
        not exists (select 1 from lines where lines.subscription_item_id = items.subscription_item_id)
        -- incomplete: the first payment never succeeded; trialing: nothing contracted yet
        and subscriptions.status in ('active', 'past_due', 'unpaid', 'canceled')
),

terms as (
    select * from billed
    union all
    select * from never_billed
),

bounded as (
    select
        terms.*,
        subscriptions.stripe_customer_id,
        subscriptions.ended_at,
        -- A term lasts until the next one starts. The last lasts while the subscription runs:
        -- an open-ended subscription runs to the as-of date even if its next invoice is late.
        coalesce(
            lead(terms.effective_from) over (partition by terms.subscription_item_id order by terms.effective_from),
            case when subscriptions.ended_at is not null then coalesce(terms.period_end_at, subscriptions.ended_at) end
        ) as scheduled_to
    from terms
    inner join subscriptions
        on terms.subscription_id = subscriptions.subscription_id
)

select
    subscription_item_id || ':' || {{ format_timestamp('effective_from', '%Y-%m-%dT%H:%M:%S') }} as subscription_item_term_id,
    subscription_item_id,
    subscription_id,
    stripe_customer_id,
    invoice_id,
    invoice_status,
    price_id,
    product_id,
    currency,
    quantity,
    unit_amount,
    billing_interval,
    billing_interval_count,
    gross_amount,
    recurring_discount,
    one_off_discount,
    is_paused,
    term_source,
    -- The end of the period its invoice billed (null when never invoiced): a term in force
    -- past it is contracted but not yet billed.
    period_end_at as billed_until,
    effective_from,
    -- A cancellation ends the term at once, even inside a period already billed.
    case
        when ended_at is null then scheduled_to
        when scheduled_to is null then ended_at
        else least(scheduled_to, ended_at)
    end as effective_to
from bounded
-- Cancelled before it began (a trial that never converted): never in force.
where ended_at is null or ended_at > effective_from
