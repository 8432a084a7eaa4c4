select
    id as product_id,
    {{ clean_string('name') }} as product_name,
    -- The plan tier the account notes in the product's metadata, if it does (which key: dbt
    -- var stripe_metadata_keys.plan_tier); int_stripe__price_plan_tiers decides the tier.
    lower({{ custom_field('metadata', 'stripe_metadata_keys', 'plan_tier') }}) as plan_tier_metadata,
    active as is_active,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'products') }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
