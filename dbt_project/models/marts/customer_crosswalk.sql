-- Every source id and the one customer it belongs to; see the identity_resolution doc block.

select
    source_system || ':' || source_id as source_key,
    source_system,
    source_id,
    customer_id,
    match_rule,
    linked_company_id,
    company_candidates,
    customer_id <> rule_customer_id as is_overridden
from {{ ref('int_identity_resolution') }}
