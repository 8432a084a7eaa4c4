-- Retention and churn rates per month; see the retention doc block for the definitions.

with movements as (
    select customer_id, month, mrr from {{ ref('revenue_movements') }}
),

bridge as (
    select * from {{ ref('mrr_bridge') }}
),

-- Each customer's MRR now against twelve months earlier, for the customers paying then.
cohort as (
    select
        cast({{ dbt.dateadd('month', 12, 'then_.month') }} as date) as month,
        sum(then_.mrr) as base_mrr,
        sum(coalesce(now_.mrr, 0)) as retained_mrr,
        sum(least(coalesce(now_.mrr, 0), then_.mrr)) as retained_mrr_without_expansion,
        count(*) as base_customers,
        count(now_.customer_id) filter (where now_.mrr > 0) as retained_customers
    from movements as then_
    left join movements as now_
        on then_.customer_id = now_.customer_id
        and now_.month = cast({{ dbt.dateadd('month', 12, 'then_.month') }} as date)
    where then_.mrr > 0
    group by 1
)

select
    bridge.month,
    bridge.opening_mrr,
    bridge.closing_mrr,
    bridge.opening_customers,
    bridge.churned_customers,
    cast(bridge.churned_customers as {{ type_double() }}) / nullif(bridge.opening_customers, 0) as logo_churn_rate,
    -- DuckDB divides decimals in DOUBLE; dividing doubles says so for every warehouse.
    cast(bridge.churned_mrr + bridge.contraction_mrr as {{ type_double() }}) / cast(nullif(bridge.opening_mrr, 0) as {{ type_double() }})
        as revenue_churn_rate,
    cohort.base_mrr as trailing_12m_base_mrr,
    cast(cohort.retained_mrr as {{ type_double() }}) / cast(nullif(cohort.base_mrr, 0) as {{ type_double() }}) as net_revenue_retention,
    cast(cohort.retained_mrr_without_expansion as {{ type_double() }}) / cast(nullif(cohort.base_mrr, 0) as {{ type_double() }})
        as gross_revenue_retention,
    cast(cohort.retained_customers as {{ type_double() }}) / nullif(cohort.base_customers, 0) as logo_retention_12m
from bridge
left join cohort
    on bridge.month = cohort.month
