-- What group calls say about each account (product workspace): its name and web domain, for
-- identity resolution to match on.
{% set latest = ['occurred_at', 'received_at', byte_order('event_id')] %}

with group_calls as (
    select
        workspace_id,
        occurred_at,
        received_at,
        event_id,
        {{ clean_string(json_text('traits', 'name')) }} as account_name,
        -- Segment's reserved group trait is `website`; some clients send `domain` instead.
        coalesce({{ clean_string(json_text('traits', 'website')) }}, {{ clean_string(json_text('traits', 'domain')) }}) as website
    from {{ ref('stg_usage_events__events') }}
    where event_type = 'group' and workspace_id is not null
)

select
    workspace_id as account_id,
    -- The latest call that names it wins, as in int_usage_user_accounts.
    {{ arg_max('account_name', latest, filter='account_name is not null') }} as account_name,
    {{ arg_max('website', latest, filter='website is not null') }} as account_website,
    {{ normalized_domain(arg_max('website', latest, filter='website is not null')) }} as account_domain,
    min(occurred_at) as first_seen_at,
    max(occurred_at) as last_seen_at,
    count(*) as group_calls
from group_calls
group by workspace_id
