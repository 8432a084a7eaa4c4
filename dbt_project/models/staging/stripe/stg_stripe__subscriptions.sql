select
    id as subscription_id,
    customer as stripe_customer_id,
    {{ clean_enum('status') }} as status,
    {{ clean_enum('currency') }} as currency,
    {{ unix_to_timestamp('created') }} as created_at,
    {{ unix_to_timestamp('start_date') }} as started_at,
    {{ unix_to_timestamp('trial_start') }} as trial_started_at,
    {{ unix_to_timestamp('trial_end') }} as trial_ended_at,
    {{ unix_to_timestamp('canceled_at') }} as canceled_at,
    {{ unix_to_timestamp('cancel_at') }} as cancel_at,
    cancel_at_period_end,
    {{ unix_to_timestamp('ended_at') }} as ended_at,
    {{ clean_enum('pause_collection__behavior') }} as pause_collection_behavior,
    -- The discounts applying now (Stripe removes one that ran out), by id; their coupons are
    -- in stg_stripe__discounts and stg_stripe__coupons.
    {{ json_string_array('discounts') }} as discount_ids,
    -- Stripe embeds only the first page of items; true means items are missing here.
    coalesce(items__has_more, false) as has_more_items
from {{ source('stripe', 'subscriptions') }}
