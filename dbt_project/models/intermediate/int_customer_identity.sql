-- One row per customer: its id in every system. A customer may hold several ids of one
-- system (duplicate CRM companies, a second Stripe customer); the one shown is the one its
-- strongest rule linked, and the count says how many there are (all are in the crosswalk).
-- A table, not a view: customers and the billing-link test read it, and its five key tests
-- each computed it again as a view.
{{ config(materialized='table') }}

with crosswalk as (
    select * from {{ ref('int_identity_resolution') }}
),

companies as (
    select company_id, created_at from {{ ref('stg_hubspot__companies') }}
    where not is_archived
),

ranked as (
    select
        crosswalk.*,
        row_number() over (
            partition by crosswalk.customer_id, crosswalk.source_system
            order by
                -- The surviving CRM company, then explicit links, then inferred ones.
                case crosswalk.match_rule
                    when 'crm_company' then 0
                    when 'manual_override' then 1
                    when 'crm_stripe_property' then 1
                    when 'zendesk_external_id' then 1
                    when 'crm_workspace_property' then 1
                    when 'stripe_metadata' then 2
                    else 3
                end,
                companies.created_at,
                {{ byte_order('crosswalk.source_id') }}
        ) as rank_in_system
    from crosswalk
    left join companies
        on crosswalk.source_system = 'hubspot'
        and crosswalk.source_id = companies.company_id
)

select
    customer_id,
    max(source_id) filter (where source_system = 'hubspot' and rank_in_system = 1) as hubspot_company_id,
    max(source_id) filter (where source_system = 'stripe' and rank_in_system = 1) as stripe_customer_id,
    cast(max(source_id) filter (where source_system = 'zendesk' and rank_in_system = 1) as bigint) as zendesk_organization_id,
    max(source_id) filter (where source_system = 'product' and rank_in_system = 1) as workspace_id,
    count(*) filter (where source_system = 'hubspot') as hubspot_company_count,
    count(*) filter (where source_system = 'stripe') as stripe_customer_count,
    count(*) filter (where source_system = 'zendesk') as zendesk_organization_count,
    count(*) filter (where source_system = 'product') as workspace_count,
    {{ sorted_distinct_array('source_system') }} as source_systems
from ranked
group by customer_id
