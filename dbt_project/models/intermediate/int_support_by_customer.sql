-- Support facts per customer. Ticket statuses are the state at load time and cannot be
-- replayed; only tickets and ratings created before the as-of instant are counted so a
-- rebuild stays comparable.
-- A table, not a view: its tests and customers each computed it again as a view.
{{ config(materialized='table') }}

with crosswalk as (
    {{ customer_crosswalk('zendesk', 'organization_id', 'bigint') }}
),

tickets as (
    select crosswalk.customer_id, tickets.*, metrics.first_reply_minutes
    from {{ ref('stg_zendesk__tickets') }} as tickets
    inner join crosswalk
        on tickets.organization_id = crosswalk.organization_id
    left join {{ ref('stg_zendesk__ticket_metrics') }} as metrics
        on tickets.ticket_id = metrics.ticket_id
    where tickets.created_at < {{ as_of_timestamp() }}
),

ratings as (
    select crosswalk.customer_id, ratings.*
    from {{ ref('stg_zendesk__satisfaction_ratings') }} as ratings
    -- A rating without an organization of its own (the API reference gives ratings none)
    -- belongs to its ticket's.
    left join {{ ref('stg_zendesk__tickets') }} as rated
        on ratings.ticket_id = rated.ticket_id
    inner join crosswalk
        on coalesce(ratings.organization_id, rated.organization_id) = crosswalk.organization_id
    where ratings.created_at < {{ as_of_timestamp() }}
),

organizations as (
    select crosswalk.customer_id, max(organizations.updated_at) as organization_updated_at
    from {{ ref('stg_zendesk__organizations') }} as organizations
    inner join crosswalk
        on organizations.organization_id = crosswalk.organization_id
    where not organizations.is_deleted
    group by crosswalk.customer_id
),

ticket_stats as (
    select
        customer_id,
        count(*) as tickets_total,
        count(*) filter (where is_open) as open_tickets,
        count(*) filter (where created_at >= {{ dbt.dateadd('day', -30, as_of_timestamp()) }}) as tickets_last_30d,
        {{ median('first_reply_minutes', filter='created_at >= ' ~ dbt.dateadd('day', -90, as_of_timestamp())) }}
            as median_first_reply_minutes_90d,
        max(updated_at) as last_ticket_updated_at
    from tickets
    group by customer_id
),

rating_stats as (
    select
        customer_id,
        count(*) filter (where score = 'good') as good_ratings,
        count(*) filter (where score = 'bad') as bad_ratings,
        count(*) filter (where score = 'good' and created_at >= {{ dbt.dateadd('day', -90, as_of_timestamp()) }}) as good_ratings_90d,
        count(*) filter (where score = 'bad' and created_at >= {{ dbt.dateadd('day', -90, as_of_timestamp()) }}) as bad_ratings_90d
    from ratings
    group by customer_id
)

select
    customers.customer_id,
    coalesce(ticket_stats.tickets_total, 0) as tickets_total,
    coalesce(ticket_stats.open_tickets, 0) as open_tickets,
    coalesce(ticket_stats.tickets_last_30d, 0) as tickets_last_30d,
    ticket_stats.median_first_reply_minutes_90d,
    coalesce(rating_stats.good_ratings, 0) as good_ratings,
    coalesce(rating_stats.bad_ratings, 0) as bad_ratings,
    -- Offered-but-unanswered surveys are not opinions, so they are left out of the share.
    cast(rating_stats.good_ratings as {{ type_double() }}) / nullif(rating_stats.good_ratings + rating_stats.bad_ratings, 0) as csat_score,
    cast(rating_stats.good_ratings_90d as {{ type_double() }}) / nullif(rating_stats.good_ratings_90d + rating_stats.bad_ratings_90d, 0) as csat_score_90d,
    ticket_stats.last_ticket_updated_at,
    organizations.organization_updated_at
from (select distinct customer_id from crosswalk) as customers
left join ticket_stats
    on customers.customer_id = ticket_stats.customer_id
left join rating_stats
    on customers.customer_id = rating_stats.customer_id
left join organizations
    on customers.customer_id = organizations.customer_id
