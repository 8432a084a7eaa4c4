select
    id as organization_id,
    {{ clean_string('external_id') }} as hubspot_company_id,
    {{ clean_string('name') }} as organization_name,
    {{ clean_enum('organization_fields__plan_tier') }} as plan_tier,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at
from {{ source('zendesk', 'organizations') }}
where deleted_at is null
