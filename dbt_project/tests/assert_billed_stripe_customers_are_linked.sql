-- Revenue of a Stripe customer that no HubSpot company links to cannot appear in the
-- marts (their grain is the company), so it would vanish from MRR totals unnoticed.
-- A customer deleted in Stripe is left out on purpose, with its revenue (see the `deletes`
-- doc), so it is not reported here. Shown in Dagster as a check on int_customer_identity.
{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'int_customer_identity'}}}) }}

select
    item_months.stripe_customer_id,
    count(*) as revenue_item_months
from {{ ref('int_subscription_items_monthly') }} as item_months
left join {{ ref('int_customer_identity') }} as identity
    on item_months.stripe_customer_id = identity.stripe_customer_id
where identity.customer_id is null
    and item_months.stripe_customer_id not in (
        select stripe_customer_id from {{ ref('stg_stripe__customers') }} where is_deleted
    )
group by item_months.stripe_customer_id
