-- Contracted MRR per customer and month; see the mrr doc block.

with item_months as (
    select * from {{ ref('int_subscription_items_monthly') }}
),

crosswalk as (
    {{ customer_crosswalk('stripe', 'stripe_customer_id') }}
),

converted as (
    select
        crosswalk.customer_id,
        item_months.month,
        item_months.subscription_id,
        item_months.currency,
        item_months.is_paused,
        item_months.gross_mrr_local,
        item_months.mrr_local,
        -- A currency without a rate yields null USD amounts, caught by not_null tests,
        -- rather than silently dropping the revenue.
        {{ to_usd('item_months.gross_mrr_local') }} as gross_mrr_usd,
        {{ to_usd('item_months.mrr_local') }} as mrr_usd
    from item_months
    inner join crosswalk
        on item_months.stripe_customer_id = crosswalk.stripe_customer_id
    {{ join_usd_rate('item_months.currency') }}
),

customer_months as (
    select
        customer_id,
        month,
        -- Local amounts in different currencies cannot be added; such a month is flagged
        -- as 'mixed' with no local total, and only the USD figures are meaningful.
        case when count(distinct currency) = 1 then min(currency) else 'mixed' end as currency,
        case when count(distinct currency) = 1 then round(sum(mrr_local), 2) end as mrr_local,
        round(sum(gross_mrr_usd), 2) as gross_mrr,
        round(sum(mrr_usd), 2) as mrr,
        count(distinct subscription_id) as subscription_count,
        count(distinct subscription_id) filter (where is_paused) as paused_subscription_count
    from converted
    group by customer_id, month
)

select
    customer_id || ':' || {{ format_timestamp('month', '%Y-%m') }} as customer_month_id,
    customer_id,
    month,
    currency,
    cast(mrr_local as {{ type_double() }}) as mrr_local,
    cast(gross_mrr as {{ type_double() }}) as gross_mrr,
    -- gross_mrr = mrr + discount_mrr exactly: the discount is what rounding leaves.
    cast(gross_mrr - mrr as {{ type_double() }}) as discount_mrr,
    cast(mrr as {{ type_double() }}) as mrr,
    -- Multiplying the already rounded DOUBLE keeps arr = 12 * mrr bit for bit.
    12 * cast(mrr as {{ type_double() }}) as arr,
    subscription_count,
    paused_subscription_count
from customer_months
where coalesce(mrr_local, mrr) > 0
