-- The monthly MRR bridge: opening + new + expansion + reactivation - contraction - churn = closing.

with movements as (
    select * from {{ ref('revenue_movements') }}
),

months as (
    select
        month,
        sum(previous_mrr) as opening_mrr,
        sum(new_mrr) as new_mrr,
        sum(expansion_mrr) as expansion_mrr,
        sum(reactivation_mrr) as reactivation_mrr,
        sum(contraction_mrr) as contraction_mrr,
        sum(churned_mrr) as churned_mrr,
        sum(mrr) as closing_mrr,
        count(*) filter (where previous_mrr > 0) as opening_customers,
        count(*) filter (where movement = 'new') as new_customers,
        count(*) filter (where movement = 'reactivation') as reactivated_customers,
        count(*) filter (where movement = 'churn') as churned_customers,
        count(*) filter (where mrr > 0) as closing_customers
    from movements
    group by month
),

-- Every month from the first revenue to the as-of month, including any with no customers.
calendar as (
    select {{ month_series('min(month)', as_of_month()) }} as month
    from movements
)

select
    calendar.month,
    cast(coalesce(opening_mrr, 0) as decimal(18, 2)) as opening_mrr,
    cast(coalesce(new_mrr, 0) as decimal(18, 2)) as new_mrr,
    cast(coalesce(expansion_mrr, 0) as decimal(18, 2)) as expansion_mrr,
    cast(coalesce(reactivation_mrr, 0) as decimal(18, 2)) as reactivation_mrr,
    cast(coalesce(contraction_mrr, 0) as decimal(18, 2)) as contraction_mrr,
    cast(coalesce(churned_mrr, 0) as decimal(18, 2)) as churned_mrr,
    cast(coalesce(closing_mrr, 0) as decimal(18, 2)) as closing_mrr,
    cast(12 * coalesce(closing_mrr, 0) as decimal(18, 2)) as closing_arr,
    coalesce(opening_customers, 0) as opening_customers,
    coalesce(new_customers, 0) as new_customers,
    coalesce(reactivated_customers, 0) as reactivated_customers,
    coalesce(churned_customers, 0) as churned_customers,
    coalesce(closing_customers, 0) as closing_customers
from calendar
left join months
    on calendar.month = months.month
