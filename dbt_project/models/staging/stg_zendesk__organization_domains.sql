with domains as (
    select * from {{ source('zendesk', 'organizations__domain_names') }}
),

organizations as (
    select id, _dlt_id from {{ source('zendesk', 'organizations') }}
    where deleted_at is null
)

select
    organizations.id || ':' || domains._dlt_list_idx as organization_domain_id,
    organizations.id as organization_id,
    {{ clean_enum('domains.value') }} as domain,
    domains._dlt_list_idx as position
from domains
inner join organizations
    on domains._dlt_parent_id = organizations._dlt_id
