select
    id as product_id,
    -- Product ids are named after the plan tier (prod_growth -> growth).
    regexp_replace(lower(id), '^prod_', '') as plan_tier,
    {{ clean_string('name') }} as product_name,
    active as is_active,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'products') }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
