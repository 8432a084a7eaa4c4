-- Every source id, the CRM company a rule linked it to, and its customer; see the
-- identity_resolution doc block for the rules and their order.
-- A table, not a view: the crosswalk is read by a dozen models (customer_crosswalk) and its
-- tests; as a view each of them computed the whole resolution again.
{{ config(materialized='table') }}

with companies as (
    select
        company_id,
        company_name,
        stripe_customer_id,
        workspace_id,
        created_at,
        {{ normalized_domain('domain') }} as domain_key,
        {{ normalized_company_name('company_name') }} as name_key
    from {{ ref('stg_hubspot__companies') }}
    where not is_archived
),

free_domains as (
    select domain from {{ ref('free_email_domains') }}
),

-- 1. Inside the CRM: one customer per domain (per name where the domain is empty). The
--    earliest-created company survives, so a duplicate entered later never takes over.
crm as (
    select
        *,
        coalesce('domain:' || domain_key, 'name:' || name_key, 'id:' || company_id) as cluster_key,
        first_value(company_id) over (
            partition by coalesce('domain:' || domain_key, 'name:' || name_key, 'id:' || company_id)
            order by created_at, {{ byte_order('company_id') }}
        ) as survivor_company_id
    from companies
),

crm_links as (
    select
        'hubspot' as source_system,
        company_id as source_id,
        company_id as linked_company_id,
        case
            when survivor_company_id = company_id then 'crm_company'
            when domain_key is not null then 'crm_duplicate_domain'
            else 'crm_duplicate_name'
        end as match_rule,
        1 as company_candidates
    from crm
),

-- 2. Billing: the CRM's property, Stripe's metadata, then the email's company domain.
stripe_customers as (
    select stripe_customer_id, hubspot_company_id, email
    from {{ ref('stg_stripe__customers') }}
    where not is_deleted
),

stripe_candidates as (
    select stripe_customers.stripe_customer_id, companies.company_id, 1 as rule_order, 'crm_stripe_property' as match_rule
    from stripe_customers
    inner join companies
        on stripe_customers.stripe_customer_id = companies.stripe_customer_id

    union all

    select stripe_customers.stripe_customer_id, companies.company_id, 2, 'stripe_metadata'
    from stripe_customers
    inner join companies
        on stripe_customers.hubspot_company_id = companies.company_id

    union all

    select stripe_customers.stripe_customer_id, crm.survivor_company_id, 3, 'email_domain'
    from stripe_customers
    inner join crm
        on crm.domain_key = {{ email_domain('stripe_customers.email') }}
    where {{ email_domain('stripe_customers.email') }} not in (select domain from free_domains)
),

-- 3. Support: the organization's external id, then its domains, then its name.
organizations as (
    select organization_id, hubspot_company_id, organization_name
    from {{ ref('stg_zendesk__organizations') }}
    where not is_deleted
),

zendesk_candidates as (
    select cast(organizations.organization_id as varchar) as source_id, companies.company_id, 1 as rule_order, 'zendesk_external_id' as match_rule
    from organizations
    inner join companies
        on organizations.hubspot_company_id = companies.company_id

    union all

    select cast(domains.organization_id as varchar), crm.survivor_company_id, 2, 'domain'
    from {{ ref('stg_zendesk__organization_domains') }} as domains
    inner join crm
        on crm.domain_key = {{ normalized_domain('domains.domain') }}

    union all

    select cast(organizations.organization_id as varchar), crm.survivor_company_id, 3, 'company_name'
    from organizations
    inner join crm
        on crm.name_key = {{ normalized_company_name('organizations.organization_name') }}
),

-- 4. Product: the CRM's workspace property, then what the product's group calls say about
--    the account (its web domain, then its name).
accounts as (
    select account_id, account_domain, {{ normalized_company_name('account_name') }} as name_key
    from {{ ref('int_usage_accounts') }}
),

workspaces as (
    select workspace_id from companies where workspace_id is not null
    union
    select distinct workspace_id from {{ ref('int_usage_user_days') }}
    union
    select account_id from accounts
),

product_candidates as (
    select workspaces.workspace_id as source_id, companies.company_id, 1 as rule_order, 'crm_workspace_property' as match_rule
    from workspaces
    inner join companies
        on workspaces.workspace_id = companies.workspace_id

    union all

    select accounts.account_id, crm.survivor_company_id, 3, 'account_domain'
    from accounts
    inner join crm
        on accounts.account_domain = crm.domain_key

    union all

    select accounts.account_id, crm.survivor_company_id, 4, 'account_name'
    from accounts
    inner join crm
        on accounts.name_key = crm.name_key
),

candidates as (
    select 'stripe' as source_system, stripe_customer_id as source_id, company_id, rule_order, match_rule from stripe_candidates
    union all
    select 'zendesk', source_id, company_id, rule_order, match_rule from zendesk_candidates
    union all
    select 'product', source_id, company_id, rule_order, match_rule from product_candidates
),

ranked_candidates as (
    select
        candidates.*,
        crm.survivor_company_id,
        -- Explicit links (a property or id naming the other record) are rules 1 and 2.
        candidates.rule_order <= 2 as is_explicit,
        min(candidates.rule_order) over (partition by candidates.source_system, candidates.source_id) as first_rule
    from candidates
    inner join crm
        on candidates.company_id = crm.company_id
),

-- The first rule that links an id decides; ties inside a rule go to the lowest company id.
best_links as (
    select
        source_system,
        source_id,
        {{ arg_min('company_id', ['rule_order', byte_order('company_id')]) }} as linked_company_id,
        {{ arg_min('match_rule', ['rule_order', byte_order('company_id')]) }} as match_rule,
        -- Customers the explicit links, or the deciding rule's matches, point at: above 1 is a
        -- disagreement (or an ambiguous match) left visible. Weaker matches that lost to an
        -- explicit link are not a disagreement.
        count(distinct survivor_company_id) filter (where is_explicit or rule_order = first_rule) as company_candidates
    from ranked_candidates
    group by source_system, source_id
),

source_ids as (
    select 'stripe' as source_system, stripe_customer_id as source_id from stripe_customers
    union all
    select 'zendesk', cast(organization_id as varchar) from organizations
    union all
    select 'product', workspace_id from workspaces
),

other_links as (
    select
        source_ids.source_system,
        source_ids.source_id,
        best_links.linked_company_id,
        coalesce(best_links.match_rule, 'unmatched') as match_rule,
        coalesce(best_links.company_candidates, 0) as company_candidates
    from source_ids
    left join best_links
        on source_ids.source_system = best_links.source_system
        and source_ids.source_id = best_links.source_id
),

links as (
    select * from crm_links
    union all
    select * from other_links
),

resolved as (
    select
        links.*,
        crm.survivor_company_id,
        case
            when crm.survivor_company_id is not null then 'hubspot:' || crm.survivor_company_id
            -- Known to one system only: a customer of its own, named after that system's id.
            else links.source_system || ':' || links.source_id
        end as rule_customer_id
    from links
    left join crm
        on links.linked_company_id = crm.company_id
)

-- 5. Manual overrides come last and win.
select
    resolved.source_system,
    resolved.source_id,
    coalesce(overrides.customer_id, resolved.rule_customer_id) as customer_id,
    case when overrides.customer_id is not null then 'manual_override' else resolved.match_rule end as match_rule,
    resolved.linked_company_id,
    resolved.company_candidates,
    resolved.rule_customer_id
from resolved
left join {{ ref('identity_overrides') }} as overrides
    on resolved.source_system = overrides.source_system
    and resolved.source_id = overrides.source_id
