-- One row per Stripe invoice, with its customer and its total in USD. Every invoice staging
-- has is kept (any status, any date) so that the quality checks see the source as it is.

with invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
),

crosswalk as (
    {{ customer_crosswalk('stripe', 'stripe_customer_id') }}
)

select
    invoices.invoice_id,
    invoices.stripe_customer_id,
    crosswalk.customer_id,
    invoices.subscription_id,
    invoices.status,
    invoices.billing_reason,
    invoices.currency,
    invoices.subtotal,
    invoices.total,
    invoices.amount_due,
    invoices.amount_paid,
    invoices.amount_remaining,
    -- The planning rate, as for MRR. Not rounded, so that sums over invoices round to cents
    -- once and agree with mrr_reconciliation; a currency without a rate leaves it null
    -- rather than dropping the invoice.
    {{ to_usd('invoices.total') }} as total_usd,
    invoices.attempt_count,
    invoices.created_at,
    invoices.period_start_at,
    invoices.period_end_at
from invoices
left join crosswalk
    on invoices.stripe_customer_id = crosswalk.stripe_customer_id
{{ join_usd_rate('invoices.currency') }}
