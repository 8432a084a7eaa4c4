-- Tickets opened, solved and still open at the end of each day; see the support_metrics
-- doc block.

with tickets as (
    select ticket_id, priority, created_at, solved_at
    from {{ ref('ticket_metrics') }}
),

days as (
    select {{ day_series('(select cast(min(created_at) as date) from tickets)', dbt.dateadd('day', -1, as_of_date())) }} as activity_date
),

opened as (
    select
        cast(created_at as date) as activity_date,
        count(*) as tickets_opened,
        count(*) filter (where priority in ('high', 'urgent')) as urgent_opened
    from tickets
    group by 1
),

solved as (
    select
        cast(solved_at as date) as activity_date,
        count(*) as tickets_solved,
        count(*) filter (where priority in ('high', 'urgent')) as urgent_solved
    from tickets
    where solved_at < {{ as_of_timestamp() }}
    group by 1
),

daily as (
    select
        days.activity_date,
        coalesce(opened.tickets_opened, 0) as tickets_opened,
        coalesce(solved.tickets_solved, 0) as tickets_solved,
        coalesce(opened.urgent_opened, 0) as urgent_opened,
        coalesce(solved.urgent_solved, 0) as urgent_solved
    from days
    left join opened
        on days.activity_date = opened.activity_date
    left join solved
        on days.activity_date = solved.activity_date
)

select
    activity_date,
    tickets_opened,
    tickets_solved,
    -- Opened so far minus solved so far: open at the end of the day.
    cast(sum(tickets_opened - tickets_solved) over (order by activity_date) as bigint) as open_tickets,
    cast(sum(urgent_opened - urgent_solved) over (order by activity_date) as bigint) as open_urgent_tickets
from daily
