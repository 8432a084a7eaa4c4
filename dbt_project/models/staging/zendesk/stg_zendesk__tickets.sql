select
    id as ticket_id,
    organization_id,
    requester_id,
    {{ clean_string('subject') }} as subject,
    {{ clean_enum('status') }} as status,
    {{ clean_enum('priority') }} as priority,
    -- Zendesk's unsolved statuses; solved and closed tickets need no more work.
    {{ clean_enum('status') }} in ('new', 'open', 'pending', 'hold') as is_open,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at
from {{ source('zendesk', 'tickets') }}
-- Zendesk keeps deleted tickets in its export with status `deleted`.
where {{ clean_enum('status') }} is distinct from 'deleted'
