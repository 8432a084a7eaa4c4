-- The account each product user belongs to, from the calls that say so; see the yml for the rule.
{{ config(materialized='table') }}
{% set latest = ['occurred_at', 'received_at', byte_order('event_id')] %}

with memberships as (
    select event_id, event_type, user_id, anonymous_id, workspace_id, occurred_at, received_at
    from {{ ref('stg_usage_events__events') }}
    where
        workspace_id is not null
        and (event_type = 'group' or event_type = 'identify')
),

by_id as (
    select 'user' as id_type, user_id as id, event_id, event_type, workspace_id, occurred_at, received_at
    from memberships
    where user_id is not null
    union all
    -- A device's calls before its user is known (or without one) belong to its account too.
    select 'anonymous', anonymous_id, event_id, event_type, workspace_id, occurred_at, received_at
    from memberships
    where anonymous_id is not null
)

select
    id_type,
    id,
    {{ arg_max('workspace_id', latest) }} as workspace_id,
    {{ arg_max('event_id', latest) }} as decided_by_event_id,
    {{ arg_max('event_type', latest) }} as decided_by_event_type,
    max(occurred_at) as assigned_at,
    count(distinct workspace_id) as workspaces_named
from by_id
group by id_type, id
