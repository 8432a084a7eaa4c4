select
    id as invoice_id,
    customer as stripe_customer_id,
    -- The connector puts the subscription here whatever the API version sent.
    subscription as subscription_id,
    {{ clean_enum('parent__type') }} as parent_type,
    {{ clean_enum('status') }} as status,
    {{ clean_enum('billing_reason') }} as billing_reason,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('subtotal', 'currency') }} as subtotal,
    {{ stripe_amount('total', 'currency') }} as total,
    {{ stripe_amount('amount_due', 'currency') }} as amount_due,
    {{ stripe_amount('amount_paid', 'currency') }} as amount_paid,
    {{ stripe_amount('amount_remaining', 'currency') }} as amount_remaining,
    attempt_count,
    -- Its discounts by id (`discounts`, or the single `discount` before 2025-03-31).
    {{ json_string_array('discounts') }} as discount_ids,
    {{ unix_to_timestamp('created') }} as created_at,
    {{ unix_to_timestamp('period_start') }} as period_start_at,
    {{ unix_to_timestamp('period_end') }} as period_end_at
from {{ source('stripe', 'invoices') }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
