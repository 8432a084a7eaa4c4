select
    id as refund_id,
    charge as charge_id,
    payment_intent as payment_intent_id,
    {{ clean_enum('status') }} as status,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('amount', 'currency') }} as amount,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'refunds') }}
