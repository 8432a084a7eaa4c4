select
    id as ticket_metric_id,
    ticket_id,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    {{ to_utc_timestamp('solved_at') }} as solved_at
from {{ source('zendesk', 'ticket_metrics') }}
