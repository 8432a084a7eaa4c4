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
        count(*) filter (where company_id is not null and company_id not in (
            select source_id from crosswalk where source_system = 'hubspot'
        )) as orphan_rows
    from {{ ref('stg_hubspot__contacts') }}
    union all
    select
        'stripe', 'invoices', count(*),
        count(*) filter (where stripe_customer_id not in (
            select source_id from crosswalk where source_system = 'stripe'
        ))
    from {{ ref('stg_stripe__invoices') }}
    union all
    select
        'zendesk', 'tickets', count(*),
        count(*) filter (where organization_id is not null and cast(organization_id as varchar) not in (
            select source_id from crosswalk where source_system = 'zendesk'
        ))
    from {{ ref('stg_zendesk__tickets') }}
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
