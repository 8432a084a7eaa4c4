-- One row per discount applied to an invoice line (grain: line × discount), from the line's
-- `discount_amounts` list.
with applied as (
    select
        lines.id as invoice_line_id,
        lines.invoice as invoice_id,
        lines.currency,
        unnest(from_json(lines.discount_amounts, '[{"amount": "BIGINT", "discount": "VARCHAR"}]')) as applied
    from {{ source('stripe', 'invoices__lines__data') }} as lines
    inner join {{ source('stripe', 'invoices') }} as invoices
        on lines.invoice = invoices.id
    where not coalesce(invoices.deleted, false)
)

select
    invoice_line_id || ':' || coalesce(applied.discount, '?') as invoice_line_discount_id,
    invoice_line_id,
    invoice_id,
    applied.discount as discount_id,
    {{ stripe_amount('applied.amount', 'currency') }} as amount
from applied
