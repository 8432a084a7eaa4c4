-- The recurring discount applying to each subscription now (as Stripe shows it: a discount
-- that ran out is gone from the subscription), summed over its discounts: the percentages off
-- and the amounts off (in the subscription's currency) that keep applying.

with applied as (
    select subscription_id, currency, {{ unnest_string_array('discount_ids') }} as discount_id
    from {{ ref('stg_stripe__subscriptions') }}
)

select
    applied.subscription_id,
    coalesce(sum(discounts.percent_off) filter (where discounts.is_recurring), 0) as recurring_percent_off,
    cast(coalesce(sum(discounts.amount_off) filter (
        where discounts.is_recurring and discounts.amount_off_currency = applied.currency
    ), 0) as decimal(18, 2)) as recurring_amount_off,
    count(*) filter (where discounts.discount_id is null) as unknown_discounts
from applied
left join {{ ref('int_stripe__discounts') }} as discounts
    on applied.discount_id = discounts.discount_id
group by applied.subscription_id
