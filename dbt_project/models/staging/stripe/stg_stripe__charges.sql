select
    id as charge_id,
    customer as stripe_customer_id,
    payment_intent as payment_intent_id,
    -- Before API version 2025-03-31 a charge names its invoice; since then the invoice payment
    -- does (int_stripe__charge_invoices resolves both).
    invoice as invoice_id,
    {{ clean_enum('status') }} as status,
    paid as is_paid,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('amount', 'currency') }} as amount,
    {{ clean_enum('failure_code') }} as failure_code,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'charges') }}
