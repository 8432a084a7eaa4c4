-- One row per collector call with its customer. Rebuilt in full each run (staging is the
-- incremental layer). Malformed names and future timestamps stay in: the quality checks
-- report them.
{{ config(materialized='table') }}

with events as (
    select * from {{ ref('int_usage_events') }}
),

crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
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
    events.source_file_name
from events
left join crosswalk
    on events.workspace_id = crosswalk.workspace_id
