select
    id as organization_id,
    -- The account's own id for the organization; identity resolution reads it as a HubSpot
    -- company id where one has it (a convention some teams keep, not a given).
    {{ clean_string('external_id') }} as hubspot_company_id,
    {{ clean_string('name') }} as organization_name,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    -- Deleted in Zendesk. Kept, flagged: tickets, users and ratings still point at it (see
    -- "Deletes" in docs.md).
    deleted_at is not null as is_deleted
from {{ source('zendesk', 'organizations') }}
