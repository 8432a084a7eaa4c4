-- Every discount with the terms of the coupon it applies: from the coupon list, else from the
-- coupon embedded in the discount (API versions before 2025-09-30 embed it; a coupon deleted
-- since is missing from the list).

with discounts as (
    select * from {{ ref('stg_stripe__discounts') }}
),

coupons as (
    select * from {{ ref('stg_stripe__coupons') }}
)

select
    discounts.discount_id,
    discounts.coupon_id,
    discounts.stripe_customer_id,
    discounts.subscription_id,
    coalesce(coupons.duration, discounts.embedded_coupon_duration) as coupon_duration,
    coalesce(coupons.duration_in_months, discounts.embedded_coupon_duration_in_months) as coupon_duration_in_months,
    coalesce(coupons.percent_off, discounts.embedded_coupon_percent_off) as percent_off,
    case when coupons.coupon_id is not null then coupons.amount_off else discounts.embedded_coupon_amount_off end as amount_off,
    case when coupons.coupon_id is not null then coupons.currency else discounts.embedded_coupon_currency end as amount_off_currency,
    -- A coupon that keeps applying (forever, or repeating while it lasts) lowers what the
    -- customer is contracted to pay; a one-off (`once`) does not.
    coalesce(coupons.duration, discounts.embedded_coupon_duration) in ('forever', 'repeating') as is_recurring,
    discounts.started_at,
    discounts.ends_at
from discounts
left join coupons
    on discounts.coupon_id = coupons.coupon_id
