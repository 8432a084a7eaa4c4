with companies as (
    select * from {{ ref('stg_hubspot__companies') }}
),

identity as (
    select * from {{ ref('int_customer_identity') }}
),

billing as (
    select * from {{ ref('int_billing_by_customer') }}
),

stripe_customers as (
    select * from {{ ref('stg_stripe__customers') }}
),

support as (
    select * from {{ ref('int_support_by_customer') }}
),

usage as (
    select * from {{ ref('int_usage_by_customer') }}
),

current_mrr as (
    -- Read from the monthly mart itself so the two marts cannot disagree.
    select customer_id, mrr, arr
    from {{ ref('mrr_by_customer_month') }}
    where month = {{ as_of_month() }}
),

primary_contacts as (
    select
        company_id,
        arg_min(email, (created_at, contact_id)) as primary_contact_email
    from {{ ref('stg_hubspot__contacts') }}
    where email is not null
    group by company_id
)

select
    companies.company_id as customer_id,
    companies.company_name,
    companies.domain,
    companies.industry,
    companies.owner_id,
    companies.crm_status,
    coalesce(billing.subscription_status, 'none') as subscription_status,
    billing.plan_tier,
    primary_contacts.primary_contact_email,
    identity.stripe_customer_id,
    identity.zendesk_organization_id,
    identity.workspace_id,
    coalesce(billing.currency, stripe_customers.currency) as currency,
    coalesce(current_mrr.mrr, 0) as mrr,
    coalesce(current_mrr.arr, 0) as arr,
    cast(companies.annual_revenue as double) as crm_arr,
    billing.first_subscription_at,
    coalesce(support.open_tickets, 0) as open_tickets,
    coalesce(support.tickets_last_30d, 0) as tickets_last_30d,
    support.csat_score,
    coalesce(usage.active_users_30d, 0) as active_users_30d,
    usage.last_seen_at,
    companies.created_at,
    greatest(
        companies.updated_at,
        billing.last_subscription_change_at,
        support.organization_updated_at,
        support.last_ticket_updated_at,
        usage.last_seen_at
    ) as source_updated_at
from companies
left join identity
    on companies.company_id = identity.customer_id
left join billing
    on identity.stripe_customer_id = billing.stripe_customer_id
left join primary_contacts
    on companies.company_id = primary_contacts.company_id
left join stripe_customers
    on identity.stripe_customer_id = stripe_customers.stripe_customer_id
left join support
    on companies.company_id = support.customer_id
left join usage
    on companies.company_id = usage.customer_id
left join current_mrr
    on companies.company_id = current_mrr.customer_id
