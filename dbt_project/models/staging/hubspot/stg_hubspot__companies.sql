select
    id as company_id,
    {{ clean_string('name') }} as company_name,
    {{ clean_enum('domain') }} as domain,
    {{ clean_enum('industry') }} as industry,
    {{ clean_string('hubspot_owner_id') }} as owner_id,
    {{ clean_enum('lifecyclestage') }} as lifecycle_stage,
    {{ hubspot_number('annualrevenue') }} as annual_revenue,
    -- The account's custom properties, by what they mean (dbt var crm_custom_fields): null
    -- for an account that does not keep them.
    lower({{ custom_field('custom_properties', 'crm_custom_fields', 'customer_status') }}) as crm_status,
    {{ custom_field('custom_properties', 'crm_custom_fields', 'stripe_customer_id') }} as stripe_customer_id,
    {{ custom_field('custom_properties', 'crm_custom_fields', 'product_workspace_id') }} as workspace_id,
    -- Archived in HubSpot (its delete). Kept, flagged: contacts, deals and the other systems
    -- still point at it (see "Deletes" in docs.md).
    coalesce(archived, false) as is_archived,
    -- The property and the object timestamp normally agree; the property is what users edit.
    {{ to_utc_timestamp('coalesce(createdate, created_at)') }} as created_at,
    {{ to_utc_timestamp('greatest(updated_at, hs_lastmodifieddate)') }} as updated_at
from {{ source('hubspot', 'companies') }}
