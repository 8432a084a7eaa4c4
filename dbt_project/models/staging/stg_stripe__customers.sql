select
    id as stripe_customer_id,
    {{ clean_string('metadata__hubspot_company_id') }} as hubspot_company_id,
    {{ clean_string('name') }} as customer_name,
    {{ clean_enum('email') }} as email,
    {{ clean_enum('currency') }} as currency,
    livemode as is_livemode,
    {{ unix_to_timestamp('created') }} as created_at
from {{ source('stripe', 'customers') }}
-- Deleted in Stripe (a `*.deleted` event): the raw row keeps the history.
where not coalesce(deleted, false)
