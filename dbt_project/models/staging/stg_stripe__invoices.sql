{%- set invoices = source('stripe', 'invoices') %}
select
    id as invoice_id,
    customer as stripe_customer_id,
    -- The connector puts the subscription here whatever the API version sent.
    subscription as subscription_id,
    {{ clean_enum(optional_column(invoices, 'parent__type', 'varchar')) }} as parent_type,
    {{ clean_enum('status') }} as status,
    {{ clean_enum('billing_reason') }} as billing_reason,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('subtotal', 'currency') }} as subtotal,
    {{ stripe_amount('total', 'currency') }} as total,
    {{ stripe_amount('amount_due', 'currency') }} as amount_due,
    {{ stripe_amount('amount_paid', 'currency') }} as amount_paid,
    {{ stripe_amount('amount_remaining', 'currency') }} as amount_remaining,
    attempt_count,
    -- The coupon behind the invoice's discount: once, repeating or forever.
    {{ clean_enum(optional_column(invoices, 'discount__coupon__duration', 'varchar')) }} as coupon_duration,
    {{ clean_string(optional_column(invoices, 'discount__coupon__id', 'varchar')) }} as coupon_id,
    {{ unix_to_timestamp('created') }} as created_at,
    {{ unix_to_timestamp('period_start') }} as period_start_at,
    {{ unix_to_timestamp('period_end') }} as period_end_at
from {{ invoices }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
