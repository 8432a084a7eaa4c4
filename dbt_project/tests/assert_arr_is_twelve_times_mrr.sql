-- ARR is defined as exactly 12 × MRR in both marts; any difference means one of them was
-- rounded or converted on its own.
-- Shown in Dagster as a check on mrr_by_customer_month.
{{ config(meta={'dagster': {'ref': {'name': 'mrr_by_customer_month'}}}) }}

select 'customers' as model, customer_id, null::date as month, mrr, arr
from {{ ref('customers') }}
where arr is distinct from 12 * mrr

union all

select 'mrr_by_customer_month' as model, customer_id, month, mrr, arr
from {{ ref('mrr_by_customer_month') }}
where arr is distinct from 12 * mrr
