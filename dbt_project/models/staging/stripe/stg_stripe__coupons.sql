select
    id as coupon_id,
    {{ clean_enum('duration') }} as duration,
    duration_in_months,
    percent_off,
    {{ clean_enum('currency') }} as currency,
    {{ stripe_amount('amount_off', 'currency') }} as amount_off,
    valid as is_valid,
    coalesce(deleted, false) as is_deleted,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'coupons') }}
-- A deleted coupon stays: discounts that applied it still need its terms.
