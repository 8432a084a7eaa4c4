-- The Customer 360: one row per customer; see the customer_360 and health_score doc blocks.
-- Each system owns its facts (survivorship): the CRM the company's name, industry and owner
-- (from its surviving company), billing MRR and subscription status, support the tickets,
-- the product the usage.

with identity as (
    select * from {{ ref('int_customer_identity') }}
),

crosswalk as (
    select * from {{ ref('int_identity_resolution') }}
),

companies as (
    select * from {{ ref('stg_hubspot__companies') }}
    where not is_archived
),

stripe_customers as (
    select * from {{ ref('stg_stripe__customers') }}
    where not is_deleted
),

organizations as (
    select * from {{ ref('stg_zendesk__organizations') }}
    where not is_deleted
),

billing as (
    select * from {{ ref('int_billing_by_customer') }}
),

support as (
    select * from {{ ref('int_support_by_customer') }}
),

usage as (
    select * from {{ ref('int_usage_by_customer') }}
),

current_mrr as (
    -- Read from the monthly mart itself so the two marts cannot disagree.
    select customer_id, mrr, arr, gross_mrr
    from {{ ref('mrr_by_customer_month') }}
    where month = {{ as_of_month() }}
),

ever_paid as (
    select distinct customer_id from {{ ref('mrr_by_customer_month') }}
),

stripe_crosswalk as (
    {{ customer_crosswalk('stripe', 'stripe_customer_id') }}
),

paused_now as (
    select distinct stripe_crosswalk.customer_id
    from {{ ref('int_subscription_items_monthly') }} as item_months
    inner join stripe_crosswalk
        on item_months.stripe_customer_id = stripe_crosswalk.stripe_customer_id
    where item_months.month = {{ as_of_month() }} and item_months.is_paused
),

-- CRM fields come from the surviving company; a duplicate fills only what it left empty.
crm as (
    select
        crosswalk.customer_id,
        {{ surviving_company_value('company_name') }} as company_name,
        {{ surviving_company_value('domain') }} as domain,
        {{ surviving_company_value('industry') }} as industry,
        {{ surviving_company_value('owner_id') }} as owner_id,
        {{ surviving_company_value('crm_status') }} as crm_status,
        {{ surviving_company_value('annual_revenue') }} as crm_arr,
        min(companies.created_at) as created_at,
        max(companies.updated_at) as updated_at
    from crosswalk
    inner join companies
        on crosswalk.source_system = 'hubspot'
        and crosswalk.source_id = companies.company_id
    group by crosswalk.customer_id
),

primary_contacts as (
    select
        crosswalk.customer_id,
        {{ arg_min('contacts.email', ['contacts.created_at', byte_order('contacts.contact_id')]) }} as primary_contact_email,
        {{ arg_min(
            "concat_ws(' ', contacts.first_name, contacts.last_name)",
            ['contacts.created_at', byte_order('contacts.contact_id')]
        ) }} as primary_contact_name
    from {{ ref('stg_hubspot__contacts') }} as contacts
    inner join crosswalk
        on crosswalk.source_system = 'hubspot'
        and contacts.company_id = crosswalk.source_id
    where contacts.email is not null
    group by crosswalk.customer_id
),

assembled as (
    select
        identity.customer_id,
        identity.hubspot_company_id,
        identity.stripe_customer_id,
        identity.zendesk_organization_id,
        identity.workspace_id,
        array_to_string(identity.source_systems, ',') as source_systems,
        -- Known outside the CRM only: the name billing or support has for it.
        coalesce(crm.company_name, stripe_customers.customer_name, organizations.organization_name) as company_name,
        crm.domain,
        crm.industry,
        crm.owner_id,
        crm.crm_status,
        case
            when coalesce(current_mrr.mrr, 0) > 0 then 'active'
            when paused_now.customer_id is not null then 'paused'
            when billing.subscription_status = 'trialing' then 'trial'
            when ever_paid.customer_id is not null then 'churned'
            else 'none'
        end as status,
        coalesce(billing.subscription_status, 'none') as subscription_status,
        billing.plan_tier,
        billing.seats,
        coalesce(billing.currency, stripe_customers.currency) as currency,
        primary_contacts.primary_contact_name,
        primary_contacts.primary_contact_email,
        coalesce(current_mrr.mrr, 0) as mrr,
        coalesce(current_mrr.arr, 0) as arr,
        12 * coalesce(current_mrr.gross_mrr, 0) as gross_arr,
        cast(crm.crm_arr as {{ type_double() }}) as crm_arr,
        cast(coalesce(billing.lifetime_revenue, 0) as {{ type_double() }}) as lifetime_revenue,
        billing.first_subscription_at,
        billing.latest_subscription_at,
        coalesce(usage.active_users_7d, 0) as active_users_7d,
        coalesce(usage.active_users_30d, 0) as active_users_30d,
        coalesce(usage.features_used_30d, 0) as features_used_30d,
        coalesce(usage.events_30d, 0) as events_30d,
        coalesce(usage.events_prev_30d, 0) as events_prev_30d,
        usage.last_seen_at,
        coalesce(support.open_tickets, 0) as open_tickets,
        coalesce(support.tickets_last_30d, 0) as tickets_last_30d,
        support.median_first_reply_minutes_90d as median_first_reply_minutes,
        support.csat_score,
        support.csat_score_90d,
        coalesce(billing.failed_payments_90d, 0) as failed_payments_90d,
        cast(coalesce(billing.outstanding_balance, 0) as {{ type_double() }}) as outstanding_balance,
        coalesce(crm.created_at, stripe_customers.created_at, organizations.created_at) as created_at,
        greatest(
            crm.updated_at,
            billing.last_subscription_change_at,
            support.organization_updated_at,
            support.last_ticket_updated_at,
            usage.last_seen_at
        ) as source_updated_at
    from identity
    left join crm
        on identity.customer_id = crm.customer_id
    left join stripe_customers
        on identity.stripe_customer_id = stripe_customers.stripe_customer_id
    left join organizations
        on identity.zendesk_organization_id = organizations.organization_id
    left join billing
        on identity.customer_id = billing.customer_id
    left join primary_contacts
        on identity.customer_id = primary_contacts.customer_id
    left join support
        on identity.customer_id = support.customer_id
    left join usage
        on identity.customer_id = usage.customer_id
    left join current_mrr
        on identity.customer_id = current_mrr.customer_id
    left join ever_paid
        on identity.customer_id = ever_paid.customer_id
    left join paused_now
        on identity.customer_id = paused_now.customer_id
),

-- Health, for customers who have a subscription now (trial, active, paused): four parts
-- between 0 and 1, weighted (var `health_weights`).
parts as (
    select
        *,
        case
            when events_prev_30d = 0 and events_30d = 0 then null
            else cast(events_30d as {{ type_double() }}) / nullif(events_prev_30d, 0) - 1
        end as usage_trend,
        least(cast(active_users_30d as {{ type_double() }}) / greatest(coalesce(seats, 1), 1), 1) as adoption_part,
        case
            when events_prev_30d = 0 then case when events_30d > 0 then 1.0 else 0.0 end
            else least(cast(events_30d as {{ type_double() }}) / events_prev_30d, 1)
        end as engagement_part,
        1
        - 0.5 * least(cast(tickets_last_30d as {{ type_double() }}) / {{ var('health_ticket_ceiling') }}, 1)
        - 0.5 * (1 - coalesce(csat_score_90d, 1)) as support_part,
        case when outstanding_balance > 0 then 0.0 when failed_payments_90d > 0 then 0.5 else 1.0 end as billing_part
    from assembled
),

scored as (
    select
        *,
        case
            when status in ('trial', 'active', 'paused') then cast({{ round_double(
                '100 * ('
                ~ var_entry('health_weights', 'adoption') ~ ' * adoption_part + '
                ~ var_entry('health_weights', 'engagement') ~ ' * engagement_part + '
                ~ var_entry('health_weights', 'support') ~ ' * support_part + '
                ~ var_entry('health_weights', 'billing') ~ ' * billing_part)'
            ) }} as integer)
        end as health_score
    from parts
)

select
    customer_id,
    hubspot_company_id,
    stripe_customer_id,
    zendesk_organization_id,
    workspace_id,
    source_systems,
    company_name,
    domain,
    industry,
    owner_id,
    crm_status,
    status,
    subscription_status,
    plan_tier,
    seats,
    currency,
    primary_contact_name,
    primary_contact_email,
    mrr,
    arr,
    gross_arr,
    crm_arr,
    lifetime_revenue,
    first_subscription_at,
    latest_subscription_at,
    active_users_7d,
    active_users_30d,
    features_used_30d,
    events_30d,
    usage_trend,
    last_seen_at,
    open_tickets,
    tickets_last_30d,
    median_first_reply_minutes,
    csat_score,
    failed_payments_90d,
    outstanding_balance,
    health_score,
    case
        when health_score is null then null
        when status = 'paused' or health_score < {{ var_entry('churn_risk_thresholds', 'high') }} then 'high'
        when health_score < {{ var_entry('churn_risk_thresholds', 'medium') }} then 'medium'
        else 'low'
    end as churn_risk,
    created_at,
    source_updated_at
from scored
