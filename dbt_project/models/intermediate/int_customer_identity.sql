-- The HubSpot company is the anchor: every other system is attached to it. When two links
-- disagree or one company matches several records, one is chosen deterministically and the
-- candidate counts are kept so the disagreement stays visible downstream.

with companies as (
    select * from {{ ref('stg_hubspot__companies') }}
),

stripe_customers as (
    select * from {{ ref('stg_stripe__customers') }}
),

organizations as (
    select * from {{ ref('stg_zendesk__organizations') }}
),

stripe_candidates as (
    -- The CRM property is what sales maintains, so it wins over Stripe's metadata.
    select
        companies.company_id,
        stripe_customers.stripe_customer_id,
        stripe_customers.created_at,
        1 as link_priority,
        'crm_property' as link_source
    from companies
    inner join stripe_customers
        on companies.stripe_customer_id = stripe_customers.stripe_customer_id

    union all

    select
        stripe_customers.hubspot_company_id as company_id,
        stripe_customers.stripe_customer_id,
        stripe_customers.created_at,
        2 as link_priority,
        'stripe_metadata' as link_source
    from stripe_customers
    where stripe_customers.hubspot_company_id is not null
),

stripe_links as (
    select
        company_id,
        count(distinct stripe_customer_id) as stripe_customer_candidates,
        arg_min(stripe_customer_id, (link_priority, created_at, stripe_customer_id)) as stripe_customer_id,
        arg_min(link_source, (link_priority, created_at, stripe_customer_id)) as stripe_link_source
    from stripe_candidates
    group by company_id
),

zendesk_links as (
    select
        hubspot_company_id as company_id,
        count(*) as zendesk_organization_candidates,
        min(organization_id) as zendesk_organization_id
    from organizations
    where hubspot_company_id is not null
    group by hubspot_company_id
)

select
    companies.company_id as customer_id,
    companies.company_id as hubspot_company_id,
    stripe_links.stripe_customer_id,
    stripe_links.stripe_link_source,
    coalesce(stripe_links.stripe_customer_candidates, 0) as stripe_customer_candidates,
    companies.stripe_customer_id as crm_stripe_customer_id,
    zendesk_links.zendesk_organization_id,
    coalesce(zendesk_links.zendesk_organization_candidates, 0) as zendesk_organization_candidates,
    companies.workspace_id
from companies
left join stripe_links
    on companies.company_id = stripe_links.company_id
left join zendesk_links
    on companies.company_id = zendesk_links.company_id
