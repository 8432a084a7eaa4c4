-- The bridge must hold to the cent every month, chain (each opening is the previous
-- closing) and close on the MRR mart's own total.
-- Shown in Dagster as a check on mrr_bridge.
{{ config(meta={'dagster': {'ref': {'name': 'mrr_bridge'}}}) }}

with bridge as (
    select
        *,
        lag(closing_mrr) over (order by month) as previous_closing_mrr
    from {{ ref('mrr_bridge') }}
),

mart as (
    select month, cast(sum(cast(mrr as decimal(18, 2))) as decimal(18, 2)) as mrr
    from {{ ref('mrr_by_customer_month') }}
    group by month
)

select bridge.month, 'does not balance' as problem
from bridge
where opening_mrr + new_mrr + expansion_mrr + reactivation_mrr - contraction_mrr - churned_mrr != closing_mrr

union all

select bridge.month, 'opening is not the previous closing'
from bridge
where previous_closing_mrr is not null and opening_mrr != previous_closing_mrr

union all

select bridge.month, 'closing differs from mrr_by_customer_month'
from bridge
left join mart on bridge.month = mart.month
where bridge.closing_mrr != coalesce(mart.mrr, 0)
