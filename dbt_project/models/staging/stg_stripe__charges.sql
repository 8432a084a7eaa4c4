select
    id as charge_id,
    customer as stripe_customer_id,
    invoice as invoice_id,
    {{ clean_enum('status') }} as status,
    paid as is_paid,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('amount', 'currency') }} as amount,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'charges') }}
