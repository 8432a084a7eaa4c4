-- Ticket statuses are the state at load time and cannot be replayed; only tickets and
-- ratings created before the as-of instant are counted so a rebuild stays comparable.

with identity as (
    select * from {{ ref('int_customer_identity') }}
),

tickets as (
    select * from {{ ref('stg_zendesk__tickets') }}
    where created_at < {{ as_of_timestamp() }}
),

ratings as (
    select * from {{ ref('stg_zendesk__satisfaction_ratings') }}
    where created_at < {{ as_of_timestamp() }}
),

organizations as (
    select * from {{ ref('stg_zendesk__organizations') }}
),

ticket_stats as (
    select
        organization_id,
        count(*) as tickets_total,
        count(*) filter (where is_open) as open_tickets,
        count(*) filter (
            where created_at >= {{ as_of_timestamp() }} - interval 30 day
        ) as tickets_last_30d,
        max(updated_at) as last_ticket_updated_at
    from tickets
    group by organization_id
),

rating_stats as (
    select
        organization_id,
        count(*) filter (where score = 'good') as good_ratings,
        count(*) filter (where score = 'bad') as bad_ratings
    from ratings
    group by organization_id
)

select
    identity.customer_id,
    identity.zendesk_organization_id,
    coalesce(ticket_stats.tickets_total, 0) as tickets_total,
    coalesce(ticket_stats.open_tickets, 0) as open_tickets,
    coalesce(ticket_stats.tickets_last_30d, 0) as tickets_last_30d,
    coalesce(rating_stats.good_ratings, 0) as good_ratings,
    coalesce(rating_stats.bad_ratings, 0) as bad_ratings,
    -- Offered-but-unanswered surveys are not opinions, so they are left out of the share.
    cast(rating_stats.good_ratings as double)
        / nullif(rating_stats.good_ratings + rating_stats.bad_ratings, 0) as csat_score,
    ticket_stats.last_ticket_updated_at,
    organizations.updated_at as organization_updated_at
from identity
left join ticket_stats
    on identity.zendesk_organization_id = ticket_stats.organization_id
left join rating_stats
    on identity.zendesk_organization_id = rating_stats.organization_id
left join organizations
    on identity.zendesk_organization_id = organizations.organization_id
