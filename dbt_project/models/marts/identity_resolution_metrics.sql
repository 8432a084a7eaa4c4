-- How well the systems' ids resolve into customers, per source system; see the
-- identity_resolution doc block.

with crosswalk as (
    select * from {{ ref('int_identity_resolution') }}
),

systems_per_customer as (
    select customer_id, count(distinct source_system) as systems
    from crosswalk
    group by customer_id
),

ids as (
    select
        crosswalk.source_system,
        count(*) as source_ids,
        count(*) filter (where systems_per_customer.systems > 1) as matched_ids,
        count(*) filter (where crosswalk.match_rule = 'manual_override') as overridden_ids,
        count(*) filter (where crosswalk.company_candidates > 1) as conflicting_ids
    from crosswalk
    inner join systems_per_customer
        on crosswalk.customer_id = systems_per_customer.customer_id
    group by crosswalk.source_system
),

-- Records that point at an id their own system does not have: they reach no customer.
facts as (
    select
        'hubspot' as source_system, 'contacts' as fact, count(*) as fact_rows,
        count(*) filter (where contacts.company_id is not null and not exists (
            select 1 from crosswalk where crosswalk.source_system = 'hubspot' and crosswalk.source_id = contacts.company_id
        )) as orphan_rows
    from {{ ref('stg_hubspot__contacts') }} as contacts
    union all
    select
        'stripe', 'invoices', count(*),
        count(*) filter (where invoices.stripe_customer_id is not null and not exists (
            select 1 from crosswalk where crosswalk.source_system = 'stripe' and crosswalk.source_id = invoices.stripe_customer_id
        ))
    from {{ ref('stg_stripe__invoices') }} as invoices
    union all
    select
        'zendesk', 'tickets', count(*),
        count(*) filter (where tickets.organization_id is not null and not exists (
            select 1 from crosswalk
            where crosswalk.source_system = 'zendesk' and crosswalk.source_id = cast(tickets.organization_id as varchar)
        ))
    from {{ ref('stg_zendesk__tickets') }} as tickets
)

select
    ids.source_system,
    ids.source_ids,
    ids.matched_ids,
    ids.source_ids - ids.matched_ids as unmatched_ids,
    {{ round_double('cast(ids.matched_ids as ' ~ type_double() ~ ') / ids.source_ids', 4) }} as match_rate,
    ids.overridden_ids,
    ids.conflicting_ids,
    facts.fact,
    coalesce(facts.fact_rows, 0) as fact_rows,
    coalesce(facts.orphan_rows, 0) as orphan_rows,
    {{ round_double('cast(facts.orphan_rows as ' ~ type_double() ~ ') / nullif(facts.fact_rows, 0)', 4) }} as orphan_rate
from ids
left join facts
    on ids.source_system = facts.source_system
