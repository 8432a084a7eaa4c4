select
    lines.id as invoice_line_id,
    lines.invoice as invoice_id,
    lines.position as line_position,
    {{ clean_enum('lines.parent__type') }} as parent_type,
    coalesce(
        lines.parent__subscription_item_details__subscription,
        -- A subscription item's line names its subscription only since 2025-04-30 (nullable
        -- there); its invoice does.
        case when lines.parent__subscription_item_details__subscription_item is not null then invoices.subscription end
    ) as subscription_id,
    lines.parent__subscription_item_details__subscription_item as subscription_item_id,
    lines.parent__invoice_item_details__invoice_item as invoice_item_id,
    lines.pricing__price_details__price as price_id,
    lines.pricing__price_details__product as product_id,
    coalesce(lines.parent__subscription_item_details__proration, lines.parent__invoice_item_details__proration, false)
        as is_proration,
    {{ clean_enum('lines.currency') }} as currency,
    lines.quantity,
    -- unit_amount_decimal is text in minor units (it may carry sub-cent decimals).
    {{ stripe_amount(try_cast_number('lines.pricing__unit_amount_decimal', 'decimal(18, 6)'), 'lines.currency') }} as unit_amount,
    {{ stripe_amount('lines.amount', 'lines.currency') }} as amount,
    -- Every discount applied to the line, in minor units (a JSON list of {amount, discount});
    -- int_stripe__invoice_line_discounts has them one by one.
    {{ stripe_amount('coalesce(' ~ json_array_sum('lines.discount_amounts', 'amount') ~ ', 0)', 'lines.currency') }} as discount_amount,
    {{ unix_to_timestamp('lines.period__start') }} as period_start_at,
    {{ unix_to_timestamp('lines.period__end') }} as period_end_at
from {{ source('stripe', 'invoices__lines__data') }} as lines
-- Lines of invoices deleted in Stripe go with them.
inner join {{ source('stripe', 'invoices') }} as invoices
    on lines.invoice = invoices.id
where not coalesce(invoices.deleted, false)
