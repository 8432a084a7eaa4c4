with item_months as (
    select * from {{ ref('int_subscription_items_monthly') }}
),

identity as (
    select * from {{ ref('int_customer_identity') }}
),

exchange_rates as (
    select * from {{ ref('exchange_rates') }}
),

converted as (
    select
        identity.customer_id,
        item_months.month,
        item_months.subscription_id,
        item_months.currency,
        item_months.mrr_local,
        -- A currency without a rate yields null USD amounts, caught by not_null tests,
        -- rather than silently dropping the revenue.
        item_months.mrr_local * exchange_rates.rate_to_usd as mrr_usd
    from item_months
    inner join identity
        on item_months.stripe_customer_id = identity.stripe_customer_id
    left join exchange_rates
        on item_months.currency = exchange_rates.currency
),

customer_months as (
    select
        customer_id,
        month,
        -- Local amounts in different currencies cannot be added; such a month is flagged
        -- as 'mixed' with no local total, and only the USD figures are meaningful.
        case when count(distinct currency) = 1 then min(currency) else 'mixed' end as currency,
        case when count(distinct currency) = 1 then round(sum(mrr_local), 2) end as mrr_local,
        round(sum(mrr_usd), 2) as mrr,
        count(distinct subscription_id) as subscription_count
    from converted
    group by customer_id, month
)

select
    customer_id,
    month,
    currency,
    cast(mrr_local as double) as mrr_local,
    cast(mrr as double) as mrr,
    -- Multiplying the already rounded DOUBLE keeps arr = 12 * mrr bit for bit.
    12 * cast(mrr as double) as arr,
    subscription_count
from customer_months
where coalesce(mrr_local, mrr) > 0
