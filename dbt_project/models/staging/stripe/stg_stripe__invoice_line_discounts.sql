-- One row per discount applied to an invoice line (grain: line × discount), from the line's
-- `discount_amounts` list of {amount, discount}.
with applied as (
    select
        lines.id as invoice_line_id,
        lines.invoice as invoice_id,
        lines.currency,
        {{ json_array_elements('lines.discount_amounts') }} as entry
    from {{ source('stripe', 'invoices__lines__data') }} as lines
    inner join {{ source('stripe', 'invoices') }} as invoices
        on lines.invoice = invoices.id
    where not coalesce(invoices.deleted, false)
)

select
    invoice_line_id || ':' || coalesce({{ json_text('entry', 'discount') }}, '?') as invoice_line_discount_id,
    invoice_line_id,
    invoice_id,
    {{ json_text('entry', 'discount') }} as discount_id,
    {{ stripe_amount("cast(" ~ json_text('entry', 'amount') ~ " as bigint)", 'currency') }} as amount
from applied
