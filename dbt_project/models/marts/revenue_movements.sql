-- How each customer's MRR moved from one month to the next; see the revenue_movements doc block.

with customer_months as (
    select
        customer_id,
        month,
        -- Cents, exactly: the bridge adds these up and must balance to the cent.
        cast(mrr as decimal(18, 2)) as mrr
    from {{ ref('mrr_by_customer_month') }}
),

customer_spans as (
    select
        customer_id,
        min(month) as first_month,
        -- One month past the last revenue month books the churn, unless that is after the
        -- as-of month: revenue in the as-of month has not churned yet.
        least(cast({{ dbt.dateadd('month', 1, 'max(month)') }} as date), {{ as_of_month() }}) as last_month
    from customer_months
    group by customer_id
),

spine as (
    select
        customer_id,
        first_month,
        {{ month_series('first_month', 'last_month') }} as month
    from customer_spans
),

filled as (
    select
        spine.customer_id,
        spine.month,
        spine.first_month,
        coalesce(customer_months.mrr, 0) as mrr
    from spine
    left join customer_months
        on spine.customer_id = customer_months.customer_id
        and spine.month = customer_months.month
),

with_previous as (
    select
        *,
        coalesce(lag(mrr) over (partition by customer_id order by month), 0) as previous_mrr
    from filled
),

classified as (
    select
        customer_id,
        month,
        previous_mrr,
        mrr,
        cast(mrr - previous_mrr as decimal(18, 2)) as mrr_change,
        case
            -- The first revenue month is always new, never a reactivation.
            when month = first_month then 'new'
            when previous_mrr = 0 and mrr > 0 then 'reactivation'
            when previous_mrr > 0 and mrr = 0 then 'churn'
            when mrr > previous_mrr then 'expansion'
            when mrr < previous_mrr then 'contraction'
            else 'none'
        end as movement
    from with_previous
)

select
    customer_id || ':' || {{ format_timestamp('month', '%Y-%m') }} as customer_month_id,
    customer_id,
    month,
    -- Typed again: PostgreSQL's coalesce and lag drop a decimal's declared scale.
    cast(previous_mrr as decimal(18, 2)) as previous_mrr,
    cast(mrr as decimal(18, 2)) as mrr,
    mrr_change,
    movement,
    cast(case when movement = 'new' then mrr_change else 0 end as decimal(18, 2)) as new_mrr,
    cast(case when movement = 'expansion' then mrr_change else 0 end as decimal(18, 2)) as expansion_mrr,
    cast(case when movement = 'reactivation' then mrr_change else 0 end as decimal(18, 2)) as reactivation_mrr,
    cast(case when movement = 'contraction' then -mrr_change else 0 end as decimal(18, 2)) as contraction_mrr,
    cast(case when movement = 'churn' then -mrr_change else 0 end as decimal(18, 2)) as churned_mrr
from classified
-- Months between a churn and a reactivation carry nothing: no row.
where mrr > 0 or previous_mrr > 0
