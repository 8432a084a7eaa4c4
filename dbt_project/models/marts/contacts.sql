-- Every contact point: CRM contacts and, as billing contacts, Stripe customers (their name
-- and email are the bill-to name and the address invoices go to). Nothing is filtered here,
-- not even invalid emails or future dates: the quality checks must see those defects.

with crm_contacts as (
    select * from {{ ref('stg_hubspot__contacts') }}
),

billing_contacts as (
    select * from {{ ref('stg_stripe__customers') }}
    where not is_deleted
),

-- A CRM contact belongs to the customer of its associated company, a billing contact to
-- the customer of its Stripe customer.
company_crosswalk as (
    {{ customer_crosswalk('hubspot', 'company_id') }}
),

stripe_crosswalk as (
    {{ customer_crosswalk('stripe', 'stripe_customer_id') }}
),

contact_points as (
    select
        'hubspot' as source_system,
        crm_contacts.contact_id as source_id,
        'crm_contact' as contact_role,
        company_crosswalk.customer_id,
        {{ clean_string("concat_ws(' ', crm_contacts.first_name, crm_contacts.last_name)") }} as full_name,
        crm_contacts.job_title,
        crm_contacts.email,
        crm_contacts.created_at,
        crm_contacts.updated_at
    from crm_contacts
    left join company_crosswalk
        on crm_contacts.company_id = company_crosswalk.company_id

    union all

    select
        'stripe',
        billing_contacts.stripe_customer_id,
        'billing',
        stripe_crosswalk.customer_id,
        billing_contacts.customer_name,
        cast(null as varchar),
        billing_contacts.email,
        billing_contacts.created_at,
        -- Stripe keeps no update time for a customer: its creation is the last change known
        -- (updated_at by position in the union, hence the repeated column).
        billing_contacts.created_at  -- noqa: AL08
    from billing_contacts
    left join stripe_crosswalk
        on billing_contacts.stripe_customer_id = stripe_crosswalk.stripe_customer_id
)

select
    contact_points.source_system || ':' || contact_points.source_id as contact_key,
    contact_points.source_system,
    contact_points.source_id,
    contact_points.contact_role,
    contact_points.customer_id,
    contact_points.full_name,
    contact_points.job_title,
    contact_points.email,
    -- Taken from the last '@' as the address stands, so that a malformed address still shows
    -- where it was meant to go; not normalised like the identity-resolution email domain.
    case
        when contact_points.email like '%@%'
            then nullif({{ regexp_extract('contact_points.email', '[^@]*$') }}, '')
    end as email_domain,
    contact_points.created_at,
    contact_points.updated_at
from contact_points
