-- The plan tier each price sells; see the plan_tier doc block. Never read from an id: the
-- plan_tiers seed maps a price's lookup key or a product id the account names, else the
-- product's metadata says it, else the price is `unmapped`.

with prices as (
    -- Every price anything bills: the catalogue, and the copies subscription items and
    -- invoice lines carry of prices the catalogue may no longer list.
    select price_id, product_id, lookup_key from {{ ref('stg_stripe__prices') }}
    union
    select price_id, product_id, price_lookup_key from {{ ref('stg_stripe__subscription_items') }}
    union
    select price_id, product_id, null from {{ ref('stg_stripe__invoice_lines') }} where price_id is not null
),

one_per_price as (
    select price_id, {{ byte_order_max('product_id') }} as product_id, {{ byte_order_max('lookup_key') }} as lookup_key
    from prices
    group by price_id
),

mapping as (
    select * from {{ ref('plan_tiers') }}
)

select
    prices.price_id,
    prices.product_id,
    prices.lookup_key,
    lower(coalesce(by_lookup_key.plan_tier, by_product.plan_tier, products.plan_tier_metadata, 'unmapped')) as plan_tier,
    case
        when by_lookup_key.plan_tier is not null then 'seed_lookup_key'
        when by_product.plan_tier is not null then 'seed_product_id'
        when products.plan_tier_metadata is not null then 'product_metadata'
        else 'unmapped'
    end as plan_tier_rule
from one_per_price as prices
left join mapping as by_lookup_key
    on prices.lookup_key = by_lookup_key.price_lookup_key
left join mapping as by_product
    on prices.product_id = by_product.product_id
    and by_product.price_lookup_key is null
left join {{ ref('stg_stripe__products') }} as products
    on prices.product_id = products.product_id
