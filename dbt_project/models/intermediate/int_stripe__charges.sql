-- Charges with the invoice each one paid. API versions before 2025-03-31 name it on the
-- charge; since then an invoice payment names the charge's PaymentIntent (or the charge, when
-- it has none). A PaymentIntent that paid several invoices counts for the earliest.

with charges as (
    select * from {{ ref('stg_stripe__charges') }}
),

payments as (
    select * from {{ ref('stg_stripe__invoice_payments') }}
),

by_payment_intent as (
    select payment_intent_id, {{ arg_min('invoice_id', ['created_at', byte_order('invoice_id')]) }} as invoice_id
    from payments
    where payment_intent_id is not null
    group by payment_intent_id
),

by_charge as (
    select charge_id, {{ arg_min('invoice_id', ['created_at', byte_order('invoice_id')]) }} as invoice_id
    from payments
    where charge_id is not null
    group by charge_id
)

select
    charges.charge_id,
    charges.stripe_customer_id,
    charges.payment_intent_id,
    coalesce(charges.invoice_id, by_charge.invoice_id, by_payment_intent.invoice_id) as invoice_id,
    charges.status,
    charges.is_paid,
    charges.currency,
    charges.amount,
    charges.failure_code,
    charges.created_at,
    case
        when charges.invoice_id is not null then 'charge'
        when by_charge.invoice_id is not null then 'invoice_payment_charge'
        when by_payment_intent.invoice_id is not null then 'invoice_payment_intent'
    end as invoice_link
from charges
left join by_charge
    on charges.charge_id = by_charge.charge_id
left join by_payment_intent
    on charges.payment_intent_id = by_payment_intent.payment_intent_id
