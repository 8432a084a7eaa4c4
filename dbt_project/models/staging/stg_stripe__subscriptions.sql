{%- set subscriptions = source('stripe', 'subscriptions') %}
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
    {{ unix_to_timestamp('ended_at') }} as ended_at,
    -- The discount applying now (Stripe removes one that ran out); an account that never
    -- used a coupon has none of these columns.
    {{ clean_enum(optional_column(subscriptions, 'discount__coupon__duration', 'varchar')) }} as coupon_duration,
    cast({{ optional_column(subscriptions, 'discount__coupon__percent_off', 'double') }} as double) as coupon_percent_off,
    {{ stripe_amount(optional_column(subscriptions, 'discount__coupon__amount_off', 'bigint'), 'currency') }} as coupon_amount_off,
    -- Stripe embeds only the first page of items; true means items are missing here.
    items__has_more as has_more_items
from {{ subscriptions }}
