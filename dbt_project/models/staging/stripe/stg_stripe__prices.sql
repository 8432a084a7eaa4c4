select
    id as price_id,
    product as product_id,
    {{ clean_string('lookup_key') }} as lookup_key,
    {{ clean_enum('type') }} as price_type,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('unit_amount', 'currency') }} as unit_amount,
    {{ clean_enum('recurring__interval') }} as billing_interval,
    recurring__interval_count as billing_interval_count,
    active as is_active,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'prices') }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
