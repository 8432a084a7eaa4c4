-- Every collector call with the account it belongs to: the one it names, else its user's,
-- else its device's (int_usage_user_accounts).

with accounts as (
    select id_type, id, workspace_id from {{ ref('int_usage_user_accounts') }}
)

select
    events.event_id,
    events.event_type,
    events.event_type in ('track', 'page', 'screen') as is_product_event,
    events.event_name,
    events.event_domain,
    events.user_id,
    events.anonymous_id,
    coalesce(events.workspace_id, by_user.workspace_id, by_device.workspace_id) as workspace_id,
    case
        when events.workspace_id is not null then 'event'
        when by_user.workspace_id is not null then 'user'
        when by_device.workspace_id is not null then 'anonymous_id'
    end as workspace_source,
    events.plan_tier,
    events.traits,
    events.occurred_at,
    events.received_at,
    events.event_format,
    events.source_file_name,
    events.load_id
from {{ ref('stg_usage_events__events') }} as events
left join accounts as by_user
    on by_user.id_type = 'user'
    and events.workspace_id is null
    and by_user.id = events.user_id
left join accounts as by_device
    on by_device.id_type = 'anonymous'
    and events.workspace_id is null
    and by_device.id = events.anonymous_id
