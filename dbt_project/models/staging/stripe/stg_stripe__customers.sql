select
    id as stripe_customer_id,
    -- The CRM company the account notes in the customer's metadata (which key: dbt var
    -- stripe_metadata_keys.crm_company_id).
    {{ custom_field('metadata', 'stripe_metadata_keys', 'crm_company_id') }} as hubspot_company_id,
    {{ clean_string('name') }} as customer_name,
    {{ clean_enum('email') }} as email,
    {{ clean_enum('currency') }} as currency,
    livemode as is_livemode,
    {{ unix_to_timestamp('created') }} as created_at,
    -- Deleted in Stripe (a `*.deleted` event). Kept, flagged: its invoices, charges and
    -- subscriptions still point at it (see "Deletes" in docs.md).
    coalesce(deleted, false) as is_deleted
from {{ source('stripe', 'customers') }}
