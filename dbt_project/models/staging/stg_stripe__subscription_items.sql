with items as (
    select * from {{ source('stripe', 'subscriptions__items__data') }}
),

subscriptions as (
    select id, _dlt_id from {{ source('stripe', 'subscriptions') }}
)

select
    items.id as subscription_item_id,
    -- dlt links a child row to its parent through the parent's _dlt_id, not its Stripe id.
    subscriptions.id as subscription_id,
    items.price__id as price_id,
    items.price__product as product_id,
    items.quantity,
    {{ clean_enum('items.price__currency') }} as currency,
    {{ stripe_amount('items.price__unit_amount', 'items.price__currency') }} as unit_amount,
    lower(items.price__recurring ->> 'interval') as billing_interval,
    cast(items.price__recurring ->> 'interval_count' as bigint) as billing_interval_count,
    items.price__active as is_price_active,
    {{ unix_to_timestamp('items.created') }} as created_at,
    {{ unix_to_timestamp('items.current_period_start') }} as current_period_start_at,
    {{ unix_to_timestamp('items.current_period_end') }} as current_period_end_at
from items
left join subscriptions
    on items._dlt_parent_id = subscriptions._dlt_id
