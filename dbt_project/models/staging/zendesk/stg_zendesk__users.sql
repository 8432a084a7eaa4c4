select
    id as user_id,
    organization_id,
    {{ clean_string('name') }} as user_name,
    {{ clean_enum('email') }} as email,
    {{ clean_enum('role') }} as role,
    active as is_active,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at
from {{ source('zendesk', 'users') }}
