select
    id as discount_id,
    -- The coupon it applies: named in `source.coupon` since API version 2025-09-30, embedded
    -- whole before.
    coalesce(source__coupon, coupon__id) as coupon_id,
    customer as stripe_customer_id,
    subscription as subscription_id,
    invoice as invoice_id,
    -- The embedded coupon's terms (before 2025-09-30), for a coupon the coupon list lacks.
    {{ clean_enum('coupon__duration') }} as embedded_coupon_duration,
    coupon__duration_in_months as embedded_coupon_duration_in_months,
    coupon__percent_off as embedded_coupon_percent_off,
    {{ clean_enum('coupon__currency') }} as embedded_coupon_currency,
    {{ stripe_amount('coupon__amount_off', 'coupon__currency') }} as embedded_coupon_amount_off,
    {{ unix_to_timestamp('"start"') }} as started_at,
    {{ unix_to_timestamp('"end"') }} as ends_at
from {{ source('stripe', 'discounts') }}
