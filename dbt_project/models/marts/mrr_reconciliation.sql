-- Contracted MRR against what was invoiced, per customer and month, with each difference
-- named; see the mrr_reconciliation doc block. USD throughout.

with item_months as (
    select * from {{ ref('int_subscription_items_monthly') }}
),

crosswalk as (
    {{ customer_crosswalk('stripe', 'stripe_customer_id') }}
),

terms as (
    select
        crosswalk.customer_id,
        item_months.month,
        {{ to_usd('item_months.mrr_local') }} as contracted,
        case
            when item_months.invoice_id is null or item_months.billed_until < item_months.month_close
                then {{ to_usd('item_months.mrr_local') }}
            else 0
        end as unbilled,
        case
            when item_months.invoice_id is not null and item_months.billed_until >= item_months.month_close
                then {{ to_usd('item_months.mrr_local - item_months.line_mrr_local') }}
            else 0
        end as pending_change,
        case
            when item_months.invoice_id is not null and item_months.billed_until >= item_months.month_close
                then {{ to_usd('item_months.one_off_discount_mrr_local') }}
            else 0
        end as one_off_discount,
        case
            when item_months.invoice_id is not null and item_months.billed_until >= item_months.month_close
                and item_months.invoice_status in ('open', 'uncollectible')
                then {{ to_usd('item_months.line_mrr_local - item_months.one_off_discount_mrr_local') }}
            else 0
        end as unpaid
    from item_months
    inner join crosswalk
        on item_months.stripe_customer_id = crosswalk.stripe_customer_id
    {{ join_usd_rate('item_months.currency') }}
),

term_months as (
    select
        customer_id,
        month,
        round(sum(contracted), 2) as contracted_mrr,
        round(sum(unbilled), 2) as unbilled_mrr,
        round(sum(pending_change), 2) as pending_change_mrr,
        round(sum(one_off_discount), 2) as one_off_discount_mrr,
        round(sum(unpaid), 2) as unpaid_mrr
    from terms
    group by customer_id, month
),

invoices as (
    select
        crosswalk.customer_id,
        cast({{ dbt.date_trunc('month', 'invoices.created_at') }} as date) as month,
        invoices.invoice_id,
        {{ to_usd('invoices.total') }} as total
    from {{ ref('stg_stripe__invoices') }} as invoices
    inner join crosswalk
        on invoices.stripe_customer_id = crosswalk.stripe_customer_id
    {{ join_usd_rate('invoices.currency') }}
    where invoices.status <> 'void' and invoices.created_at < {{ as_of_timestamp() }}
),

prorations as (
    select lines.invoice_id, sum({{ to_usd('lines.amount - lines.discount_amount') }}) as amount
    from {{ ref('stg_stripe__invoice_lines') }} as lines
    {{ join_usd_rate('lines.currency') }}
    where lines.is_proration
    group by lines.invoice_id
),

invoice_months as (
    select
        invoices.customer_id,
        invoices.month,
        round(sum(invoices.total), 2) as invoiced_amount,
        round(coalesce(sum(prorations.amount), 0), 2) as proration_amount
    from invoices
    left join prorations
        on invoices.invoice_id = prorations.invoice_id
    group by invoices.customer_id, invoices.month
),

keys as (
    select customer_id, month from term_months
    union
    select customer_id, month from invoice_months
),

reconciled as (
    select
        keys.customer_id,
        keys.month,
        coalesce(term_months.contracted_mrr, 0) as contracted_mrr,
        coalesce(term_months.unbilled_mrr, 0) as unbilled_mrr,
        coalesce(term_months.pending_change_mrr, 0) as pending_change_mrr,
        coalesce(term_months.one_off_discount_mrr, 0) as one_off_discount_mrr,
        coalesce(term_months.unpaid_mrr, 0) as unpaid_mrr,
        coalesce(invoice_months.invoiced_amount, 0) as invoiced_amount,
        coalesce(invoice_months.proration_amount, 0) as proration_amount
    from keys
    left join term_months
        on keys.customer_id = term_months.customer_id and keys.month = term_months.month
    left join invoice_months
        on keys.customer_id = invoice_months.customer_id and keys.month = invoice_months.month
),

balanced as (
    select
        *,
        contracted_mrr - unbilled_mrr - pending_change_mrr - one_off_discount_mrr as billed_mrr
    from reconciled
)

select
    customer_id || ':' || {{ format_timestamp('month', '%Y-%m') }} as customer_month_id,
    customer_id,
    month,
    cast(contracted_mrr as decimal(18, 2)) as contracted_mrr,
    cast(unbilled_mrr as decimal(18, 2)) as unbilled_mrr,
    cast(pending_change_mrr as decimal(18, 2)) as pending_change_mrr,
    cast(one_off_discount_mrr as decimal(18, 2)) as one_off_discount_mrr,
    cast(billed_mrr as decimal(18, 2)) as billed_mrr,
    cast(unpaid_mrr as decimal(18, 2)) as unpaid_mrr,
    cast(billed_mrr - unpaid_mrr as decimal(18, 2)) as collected_mrr,
    cast(invoiced_amount as decimal(18, 2)) as invoiced_amount,
    cast(proration_amount as decimal(18, 2)) as proration_amount,
    cast(invoiced_amount - proration_amount - billed_mrr as decimal(18, 2)) as billing_timing_amount,
    case
        when contracted_mrr = invoiced_amount and unpaid_mrr = 0 then 'matches'
        -- concat_ws leaves out the reasons that do not apply (nulls).
        else concat_ws(
                ', ',
                case when unbilled_mrr <> 0 then 'not yet invoiced' end,
                case when pending_change_mrr <> 0 then 'plan change not yet invoiced' end,
                case when one_off_discount_mrr <> 0 then 'one-off discount' end,
                case when proration_amount <> 0 then 'proration' end,
                case when invoiced_amount - proration_amount - billed_mrr <> 0 then 'billing timing' end,
                case when unpaid_mrr <> 0 then 'failed payment' end
            )
    end as explanation
from balanced
where month <= {{ as_of_month() }}
