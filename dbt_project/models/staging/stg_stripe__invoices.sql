select
    id as invoice_id,
    customer as stripe_customer_id,
    -- Newer Stripe API versions moved the subscription under parent.subscription_details.
    coalesce(parent__subscription_details__subscription, subscription) as subscription_id,
    {{ clean_enum('parent__type') }} as parent_type,
    {{ clean_enum('status') }} as status,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('amount_due', 'currency') }} as amount_due,
    {{ stripe_amount('amount_paid', 'currency') }} as amount_paid,
    {{ unix_to_timestamp('created') }} as created_at,
    {{ unix_to_timestamp('period_start') }} as period_start_at,
    {{ unix_to_timestamp('period_end') }} as period_end_at
from {{ source('stripe', 'invoices') }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
