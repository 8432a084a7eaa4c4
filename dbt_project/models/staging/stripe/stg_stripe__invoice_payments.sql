select
    id as invoice_payment_id,
    invoice as invoice_id,
    {{ clean_enum('payment__type') }} as payment_type,
    payment__payment_intent as payment_intent_id,
    payment__charge as charge_id,
    {{ clean_enum('status') }} as status,
    is_default,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('amount_requested', 'currency') }} as amount_requested,
    {{ stripe_amount('amount_paid', 'currency') }} as amount_paid,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'invoice_payments') }}
