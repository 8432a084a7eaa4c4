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

crosswalk as (
    select source_system, source_id, customer_id
    from {{ ref('int_identity_resolution') }}
    where source_system in ('hubspot', 'stripe')
),

contact_points as (
    select
        'hubspot' as source_system,
        crm_contacts.contact_id as source_id,
        'crm_contact' as contact_role,
        -- A contact belongs to the customer of its associated company.
        crm_contacts.company_id as crosswalk_id,
        {{ clean_string("concat_ws(' ', crm_contacts.first_name, crm_contacts.last_name)") }} as full_name,
        crm_contacts.job_title,
        crm_contacts.email,
        crm_contacts.created_at,
        crm_contacts.updated_at
    from crm_contacts

    union all

    select
        'stripe',
        billing_contacts.stripe_customer_id,
        'billing',
        billing_contacts.stripe_customer_id,
        billing_contacts.customer_name,
        cast(null as varchar),
        billing_contacts.email,
        billing_contacts.created_at,
        -- Stripe keeps no update time for a customer: its creation is the last change known.
        billing_contacts.created_at
    from billing_contacts
)

select
    contact_points.source_system || ':' || contact_points.source_id as contact_key,
    contact_points.source_system,
    contact_points.source_id,
    contact_points.contact_role,
    crosswalk.customer_id,
    contact_points.full_name,
    contact_points.job_title,
    contact_points.email,
    -- Taken from the last '@' as the address stands, so that a malformed address still shows
    -- where it was meant to go; not normalised like the identity-resolution email domain.
    case
        when contact_points.email like '%@%'
            then nullif(regexp_extract(contact_points.email, '[^@]*$'), '')
    end as email_domain,
    contact_points.created_at,
    contact_points.updated_at
from contact_points
left join crosswalk
    on contact_points.source_system = crosswalk.source_system
    and contact_points.crosswalk_id = crosswalk.source_id
