"""Invoice: what billing asked customers to pay, and whether the payments back it."""

from expectations.freshness_windows import timeliness_batch
from expectations.suite import DATA_ENG, FINANCE, Batch, Suite, check
from expectations.suites.common import CURRENCIES

INVOICES = Batch(
    name="invoices",
    key=("invoice_id",),
    # The charges are summed once per invoice and joined: PostgreSQL would run a correlated
    # sum once per invoice, over the charges' view (14 s at `small`, where DuckDB decorrelates).
    sql="""
        with succeeded as (
            select invoice_id, sum(amount) as amount
            from intermediate.int_stripe__charges
            where status = 'succeeded'
            group by invoice_id
        )
        select
            i.invoice_id, customer_id, status, currency, total, amount_due, amount_paid,
            amount_paid + amount_remaining - amount_due as settlement_gap,
            case when status = 'paid' then amount_remaining end as remaining_on_paid,
            -- Payments reconcile with invoices: a paid invoice is backed by succeeded charges
            -- for exactly what it says was paid (a fully discounted invoice needs none).
            case when status = 'paid' and amount_paid > 0 then amount_paid - coalesce(succeeded.amount, 0) end
                as unpaid_by_charges,
            case when customer_id is not null then exists (
                select 1 from marts.customers as c where c.customer_id = i.customer_id
            ) end as customer_known
        from marts.invoices as i
        left join succeeded on succeeded.invoice_id = i.invoice_id
    """,
    checks=(
        check(
            "invoices_not_empty",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_table_row_count_to_be_between",
            "The invoices mart is not empty",
            min_value=1,
        ),
        check(
            "invoice_id_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every invoice has an id",
            column="invoice_id",
        ),
        check(
            "invoice_currency_present",
            "completeness",
            "blocking",
            FINANCE,
            "expect_column_values_to_not_be_null",
            "Every invoice has a currency",
            column="currency",
        ),
        check(
            "invoice_customer_present",
            "completeness",
            "warning",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every invoice belongs to a known customer",
            column="customer_id",
            causes=("a billing customer identity resolution could not link to a customer",),
            action="Link the sampled billing customers (CRM property or Stripe metadata), or add "
            "them to the identity_overrides seed.",
        ),
        check(
            "invoice_status_valid",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "Status is draft, open, paid, uncollectible or void",
            column="status",
            value_set=["draft", "open", "paid", "uncollectible", "void"],
        ),
        check(
            "invoice_currency_valid",
            "validity",
            "warning",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "Currency has a planning rate (exchange_rates seed)",
            column="currency",
            value_set=CURRENCIES,
        ),
        check(
            "invoice_total_not_negative",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Invoice totals are never negative",
            column="total",
            min_value=0,
        ),
        check(
            "invoice_id_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "One row per invoice",
            column="invoice_id",
        ),
        check(
            "invoice_settles",
            "consistency",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Paid plus remaining equals the amount due (within a cent)",
            column="settlement_gap",
            min_value=-0.01,
            max_value=0.01,
        ),
        check(
            "paid_invoice_has_nothing_remaining",
            "consistency",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "A paid invoice has nothing remaining",
            column="remaining_on_paid",
            min_value=0,
            max_value=0,
        ),
        check(
            "invoice_customer_exists",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_in_set",
            "An invoice's customer is in the customers mart",
            column="customer_known",
            value_set=[True],
        ),
        check(
            "paid_invoices_backed_by_charges",
            "accuracy",
            "warning",
            FINANCE,
            "expect_column_values_to_be_between",
            "Every paid invoice is backed by succeeded charges for the amount paid (within a cent)",
            column="unpaid_by_charges",
            min_value=-0.01,
            max_value=0.01,
            causes=(
                "an invoice marked paid out of band (bank transfer, manual edit)",
                "a refund or dispute recorded against the wrong charge",
            ),
            action="Finance: match the sampled invoices with their payments in billing.",
        ),
    ),
)

SUITE = Suite(
    entity="invoice",
    owner=FINANCE,
    description="Invoices issued by billing and the payments behind them.",
    publishes=("invoices",),
    batches=(INVOICES, timeliness_batch("invoice")),
)
