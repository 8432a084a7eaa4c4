select
    id as contact_id,
    {{ clean_string('associatedcompanyid') }} as company_id,
    {{ clean_enum('email') }} as email,
    {{ clean_string('firstname') }} as first_name,
    {{ clean_string('lastname') }} as last_name,
    {{ clean_string('jobtitle') }} as job_title,
    archived as is_archived,
    {{ to_utc_timestamp('coalesce(createdate, created_at)') }} as created_at,
    {{ to_utc_timestamp('greatest(updated_at, lastmodifieddate)') }} as updated_at
from {{ source('hubspot', 'contacts') }}
-- Archived in HubSpot (its delete): the raw row keeps the history.
where not coalesce(archived, false)
