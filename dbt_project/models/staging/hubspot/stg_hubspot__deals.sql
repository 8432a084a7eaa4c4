select
    id as deal_id,
    {{ clean_string('company_id') }} as company_id,
    {{ clean_string('dealname') }} as deal_name,
    {{ hubspot_number('amount') }} as amount,
    {{ clean_enum('dealstage') }} as deal_stage,
    {{ clean_enum('pipeline') }} as pipeline,
    archived as is_archived,
    {{ to_utc_timestamp('closedate') }} as closed_at,
    {{ to_utc_timestamp('coalesce(createdate, created_at)') }} as created_at,
    {{ to_utc_timestamp('greatest(updated_at, hs_lastmodifieddate)') }} as updated_at
from {{ source('hubspot', 'deals') }}
-- Archived in HubSpot (its delete): the raw row keeps the history.
where not coalesce(archived, false)
