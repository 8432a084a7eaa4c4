-- The customers mart's MRR must be the monthly mart's figure for the as-of month (0 when
-- the customer has no row that month), and no monthly row may lack its customer.
-- Shown in Dagster as a check on customers.
{{ config(meta={'dagster': {'ref': {'name': 'customers'}}}) }}

with current_month as (
    select customer_id, mrr
    from {{ ref('mrr_by_customer_month') }}
    where month = {{ as_of_month() }}
)

select
    coalesce(customers.customer_id, current_month.customer_id) as customer_id,
    customers.mrr as customers_mrr,
    current_month.mrr as monthly_mrr
from {{ ref('customers') }} as customers
full outer join current_month
    on customers.customer_id = current_month.customer_id
where customers.customer_id is null
    or customers.mrr is distinct from coalesce(current_month.mrr, 0)
