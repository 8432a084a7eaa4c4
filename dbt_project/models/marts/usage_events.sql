-- One row per collector call with its customer. Incremental: a run writes the calls loaded
-- since the last one, and again those whose workspace or customer would now be another (a
-- user's first group call places their earlier calls; identity resolution moves a workspace
-- to another customer). Every other row is what a full rebuild would write, so a daily run
-- costs what the day brought. Malformed names and future timestamps stay in: the quality
-- checks report them.
-- depends_on: {{ ref('stg_usage_events__events') }}, {{ ref('int_usage_user_accounts') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_id',
        on_schema_change='append_new_columns',
    )
}}
{% set incremental = is_incremental_with(['load_id', 'refreshed_at']) %}

with crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
),

{% if incremental %}
    accounts as (
        select id_type, id, workspace_id from {{ ref('int_usage_user_accounts') }}
    ),

    stored as (
        select event_id, customer_id, workspace_id, workspace_source, user_id, anonymous_id, load_id
        from {{ this }}
    ),

    moved as (
        -- A call that named no workspace takes its user's or device's, which a later call can change.
        select stored.event_id
        from stored
        left join accounts as by_user
            on by_user.id_type = 'user'
            and stored.user_id = by_user.id
        left join accounts as by_device
            on by_device.id_type = 'anonymous'
            and stored.anonymous_id = by_device.id
        left join crosswalk
            on stored.workspace_id = crosswalk.workspace_id
        where
            (
                stored.workspace_source is distinct from 'event'
                and coalesce(by_user.workspace_id, by_device.workspace_id) is distinct from stored.workspace_id
            )
            or crosswalk.customer_id is distinct from stored.customer_id
    ),

    changed as (
        select event_id from {{ ref('stg_usage_events__events') }}
        where {{ byte_order('load_id') }} > (select coalesce(max({{ byte_order('load_id') }}), '') from stored)
        union
        select event_id from moved
    ),
{% endif %}

events as (
    select * from {{ ref('int_usage_events') }}
    {% if incremental %}
        where event_id in (select event_id from changed)
    {% endif %}
)

select
    events.event_id,
    crosswalk.customer_id,
    events.workspace_id,
    events.workspace_source,
    events.user_id,
    events.anonymous_id,
    events.event_type,
    events.is_product_event,
    events.event_name,
    events.event_domain,
    events.plan_tier,
    events.occurred_at,
    events.received_at,
    events.event_format,
    events.source_file_name,
    events.load_id,
    {{ refreshed_at() }} as refreshed_at
from events
left join crosswalk
    on events.workspace_id = crosswalk.workspace_id
