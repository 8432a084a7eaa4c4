with domains as (
    select * from {{ source('zendesk', 'organizations__domain_names') }}
),

organizations as (
    select id from {{ source('zendesk', 'organizations') }}
    where deleted_at is null
)

select
    organizations.id || ':' || domains.position as organization_domain_id,
    organizations.id as organization_id,
    {{ clean_enum('domains.value') }} as domain,
    domains.position
from domains
inner join organizations
    on domains.organization_id = organizations.id
