"""Revenue: subscriptions as monthly recurring revenue, its movements, bridge and retention,
and its reconciliation with what was invoiced."""

from expectations.freshness_windows import timeliness_batch
from expectations.suite import DATA_ENG, FINANCE, Batch, Suite, check
from expectations.suites.common import CURRENCIES

_WITHIN_A_CENT = {"min_value": -0.01, "max_value": 0.01}
_MODEL_CAUSES = (
    "a change to the revenue models broke the invariant",
    "the marts were built from different loads of billing data",
)

MRR = Batch(
    name="mrr_by_customer_month",
    key=("customer_id", "month"),
    sql="""
        select
            customer_id, month, currency, mrr, gross_mrr, discount_mrr,
            arr - 12 * mrr as arr_minus_12x_mrr,
            gross_mrr - discount_mrr - mrr as net_minus_mrr,
            case when customer_id is not null then exists (
                select 1 from marts.customers as c where c.customer_id = r.customer_id
            ) end as customer_known
        from marts.mrr_by_customer_month as r
    """,
    checks=(
        check(
            "mrr_not_empty",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_table_row_count_to_be_between",
            "The MRR mart is not empty",
            min_value=1,
        ),
        check(
            "mrr_customer_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every MRR row names its customer",
            column="customer_id",
        ),
        check(
            "mrr_month_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every MRR row names its month",
            column="month",
        ),
        check(
            "mrr_present",
            "completeness",
            "blocking",
            FINANCE,
            "expect_column_values_to_not_be_null",
            "Every MRR row has an amount",
            column="mrr",
        ),
        check(
            "one_mrr_row_per_customer_month",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_compound_columns_to_be_unique",
            "One row per customer and month",
            column_list=["customer_id", "month"],
        ),
        check(
            "mrr_row_not_negative",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "MRR is never negative",
            column="mrr",
            min_value=0,
        ),
        check(
            "discount_not_negative",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Recurring discounts are never negative",
            column="discount_mrr",
            min_value=0,
        ),
        check(
            "mrr_currency_valid",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "Billing currency has a planning rate (exchange_rates seed)",
            column="currency",
            value_set=CURRENCIES,
        ),
        check(
            "mrr_arr_is_12x_mrr",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "ARR equals 12 x MRR (within a cent)",
            column="arr_minus_12x_mrr",
            causes=_MODEL_CAUSES,
            **_WITHIN_A_CENT,
        ),
        check(
            "mrr_is_gross_minus_discount",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "MRR equals gross MRR minus recurring discounts (within a cent)",
            column="net_minus_mrr",
            causes=_MODEL_CAUSES,
            **_WITHIN_A_CENT,
        ),
        check(
            "mrr_customer_exists",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_in_set",
            "Every MRR row belongs to a known customer",
            column="customer_known",
            value_set=[True],
        ),
    ),
)

BRIDGE = Batch(
    name="mrr_bridge",
    key=("month",),
    sql="""
        select
            month,
            opening_mrr + new_mrr + expansion_mrr + reactivation_mrr - contraction_mrr
                - churned_mrr - closing_mrr as bridge_gap,
            opening_mrr - coalesce(lag(closing_mrr) over (order by month), 0) as opening_gap,
            closing_mrr - coalesce((
                select sum(cast(m.mrr as decimal(18, 2))) from marts.mrr_by_customer_month as m
                where m.month = b.month
            ), 0) as closing_gap
        from marts.mrr_bridge as b
    """,
    checks=(
        check(
            "bridge_balances",
            "consistency",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Each month: opening + new + expansion + reactivation - contraction - churn = closing",
            column="bridge_gap",
            causes=_MODEL_CAUSES,
            **_WITHIN_A_CENT,
        ),
        check(
            "bridge_months_chain",
            "consistency",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Each month opens where the month before closed",
            column="opening_gap",
            causes=_MODEL_CAUSES,
            **_WITHIN_A_CENT,
        ),
        check(
            "bridge_closes_on_mrr_mart",
            "consistency",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Each month's closing MRR is the total of mrr_by_customer_month for that month",
            column="closing_gap",
            causes=_MODEL_CAUSES,
            **_WITHIN_A_CENT,
        ),
        check(
            "bridge_month_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "One bridge row per month",
            column="month",
        ),
    ),
)

MOVEMENTS = Batch(
    name="revenue_movements",
    key=("customer_id", "month"),
    sql="""
        select customer_id, month, movement, mrr - previous_mrr - mrr_change as change_gap
        from marts.revenue_movements
    """,
    checks=(
        check(
            "movement_valid",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "A movement is new, expansion, contraction, churn, reactivation or none",
            column="movement",
            value_set=["new", "expansion", "contraction", "churn", "reactivation", "none"],
        ),
        check(
            "one_movement_per_customer_month",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_compound_columns_to_be_unique",
            "One movement per customer and month",
            column_list=["customer_id", "month"],
        ),
        check(
            "movement_change_adds_up",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "MRR change equals MRR minus the previous MRR",
            column="change_gap",
            **_WITHIN_A_CENT,
        ),
    ),
)

RETENTION = Batch(
    name="revenue_retention",
    key=("month",),
    sql="""
        select month, gross_revenue_retention, net_revenue_retention, logo_churn_rate
        from marts.revenue_retention
    """,
    checks=(
        check(
            "grr_in_range",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Gross revenue retention is between 0 and 1",
            column="gross_revenue_retention",
            min_value=0,
            max_value=1,
        ),
        check(
            "nrr_not_negative",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Net revenue retention is never negative",
            column="net_revenue_retention",
            min_value=0,
        ),
        check(
            "logo_churn_in_range",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "Logo churn is a rate between 0 and 1",
            column="logo_churn_rate",
            min_value=0,
            max_value=1,
        ),
    ),
)

RECONCILIATION = Batch(
    name="mrr_reconciliation",
    key=("customer_id", "month"),
    sql="""
        select
            customer_id, month, explanation,
            invoiced_amount - (contracted_mrr - unbilled_mrr - pending_change_mrr
                - one_off_discount_mrr + proration_amount + billing_timing_amount)
                as unexplained_amount
        from marts.mrr_reconciliation
    """,
    checks=(
        check(
            "invoices_match_contracted_mrr",
            "accuracy",
            "warning",
            FINANCE,
            "expect_column_values_to_be_between",
            "What was invoiced equals contracted MRR once every named difference is taken into account (within a cent)",
            column="unexplained_amount",
            causes=(
                "an invoice edited or created by hand in billing",
                "a billing change the revenue model does not know yet",
            ),
            action="Finance: look up the sampled customer-months in billing and name the difference.",
            **_WITHIN_A_CENT,
        ),
    ),
)

SUITE = Suite(
    entity="revenue",
    owner=FINANCE,
    description="Subscriptions as MRR and ARR, revenue movements, the MRR bridge and retention.",
    publishes=("mrr_by_customer_month", "revenue_movements", "mrr_bridge", "revenue_retention", "mrr_reconciliation"),
    batches=(MRR, BRIDGE, MOVEMENTS, RETENTION, RECONCILIATION, timeliness_batch("revenue")),
)
