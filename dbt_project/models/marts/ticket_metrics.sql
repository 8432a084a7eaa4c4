-- One row per ticket with how it was handled; see the support_metrics doc block.

with tickets as (
    select * from {{ ref('stg_zendesk__tickets') }}
    where created_at < {{ as_of_timestamp() }}
),

metrics as (
    select * from {{ ref('stg_zendesk__ticket_metrics') }}
),

crosswalk as (
    {{ customer_crosswalk('zendesk', 'organization_id', 'bigint') }}
),

ratings as (
    -- A requester can rate again: the latest rating stands.
    select
        ticket_id,
        {{ arg_max('score', ['created_at', 'satisfaction_rating_id']) }} as satisfaction_score,
        max(created_at) as rated_at
    from {{ ref('stg_zendesk__satisfaction_ratings') }}
    -- Only answers are ratings: `offered` (survey sent, no answer yet) and `unoffered` are not.
    where created_at < {{ as_of_timestamp() }} and score in ('good', 'bad')
    group by ticket_id
)

select
    tickets.ticket_id,
    crosswalk.customer_id,
    tickets.organization_id,
    tickets.requester_id,
    tickets.subject,
    tickets.status,
    tickets.priority,
    tickets.is_open,
    tickets.created_at,
    tickets.updated_at,
    metrics.solved_at,
    metrics.first_reply_minutes,
    metrics.first_reply_business_minutes,
    metrics.first_resolution_minutes,
    metrics.full_resolution_minutes,
    metrics.full_resolution_business_minutes,
    coalesce(metrics.replies, 0) as replies,
    coalesce(metrics.reopens, 0) as reopens,
    coalesce(metrics.reopens, 0) > 0 as is_reopened,
    ratings.satisfaction_score,
    ratings.rated_at
from tickets
left join metrics
    on tickets.ticket_id = metrics.ticket_id
left join crosswalk
    on tickets.organization_id = crosswalk.organization_id
left join ratings
    on tickets.ticket_id = ratings.ticket_id
