select
    id as subscription_item_id,
    subscription as subscription_id,
    price__id as price_id,
    price__product as product_id,
    {{ clean_string('price__lookup_key') }} as price_lookup_key,
    quantity,
    {{ clean_enum('price__currency') }} as currency,
    {{ stripe_amount('price__unit_amount', 'price__currency') }} as unit_amount,
    lower({{ json_text('price__recurring', 'interval') }}) as billing_interval,
    cast({{ json_text('price__recurring', 'interval_count') }} as bigint) as billing_interval_count,
    price__active as is_price_active,
    {{ unix_to_timestamp('created') }} as created_at,
    {{ unix_to_timestamp('current_period_start') }} as current_period_start_at,
    {{ unix_to_timestamp('current_period_end') }} as current_period_end_at
from {{ source('stripe', 'subscriptions__items__data') }}
