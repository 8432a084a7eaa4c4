select
    id as company_id,
    {{ clean_string('name') }} as company_name,
    {{ clean_enum('domain') }} as domain,
    {{ clean_enum('industry') }} as industry,
    {{ clean_string('hubspot_owner_id') }} as owner_id,
    {{ clean_enum('lifecyclestage') }} as lifecycle_stage,
    {{ clean_enum('customer_status') }} as crm_status,
    {{ hubspot_number('annualrevenue') }} as annual_revenue,
    {{ clean_string('stripe_customer_id') }} as stripe_customer_id,
    {{ clean_string('product_workspace_id') }} as workspace_id,
    archived as is_archived,
    -- The property and the object timestamp normally agree; the property is what users edit.
    {{ to_utc_timestamp('coalesce(createdate, created_at)') }} as created_at,
    {{ to_utc_timestamp('greatest(updated_at, hs_lastmodifieddate)') }} as updated_at
from {{ source('hubspot', 'companies') }}
-- Archived in HubSpot (its delete): the raw row keeps the history.
where not coalesce(archived, false)
