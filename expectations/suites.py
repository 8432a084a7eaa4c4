"""Expectation suites per entity, declared as data.

A suite is the SQL that loads an entity's frame plus a list of checks. Each check names an
expectation type (Great Expectations' vocabulary, e.g. ``expect_column_values_to_be_unique``)
with its keyword arguments and the governance metadata the scorecard needs. Nothing here
imports an engine, so the way checks are evaluated can change without touching the suites.

Cross-column and time-relative rules are expressed as derived columns computed in the
suite's SQL, so every check stays a single-column expectation any engine can evaluate. The
SQL may use the named parameter ``$as_of`` (a naive UTC timestamp): timeliness is judged
against the as-of time of the data, not the wall clock, so sample data stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

DIMENSIONS = ("completeness", "accuracy", "consistency", "timeliness", "validity", "uniqueness")
SEVERITIES = ("blocking", "warning")

# Owners are teams, as in the entity contracts: whoever can fix the data at its source.
SALES_CS = "Sales & CS"
FINANCE = "Finance"
SUPPORT = "Customer Support"
DATA_ENG = "Data Engineering"

CUSTOMER_FRESHNESS_HOURS = 48
EMAIL_REGEX = r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
CURRENCIES = ["usd", "eur", "gbp"]


@dataclass(frozen=True)
class Check:
    expectation: str
    kwargs: Mapping[str, Any]
    dimension: str
    severity: str
    owner: str
    description: str

    def __post_init__(self) -> None:
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {self.dimension!r} in {self.expectation}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r} in {self.expectation}")

    @property
    def column(self) -> str | None:
        """The column (or columns, comma-separated) the check looks at; None for table checks."""
        if "column" in self.kwargs:
            return self.kwargs["column"]
        if "column_list" in self.kwargs:
            return ", ".join(self.kwargs["column_list"])
        return None


@dataclass(frozen=True)
class Suite:
    entity: str
    table: str
    owner: str
    sql: str
    checks: tuple[Check, ...]
    # Values sampled from these columns are masked before they are stored.
    pii_columns: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.checks:
            raise ValueError(f"suite {self.entity!r} has no checks")


def check(
    dimension: str,
    severity: str,
    owner: str,
    expectation: str,
    description: str,
    **kwargs: Any,
) -> Check:
    return Check(expectation, kwargs, dimension, severity, owner, description)


CUSTOMER = Suite(
    entity="customer",
    table="marts.customers",
    owner=SALES_CS,
    pii_columns=frozenset({"primary_contact_email"}),
    sql="""
        SELECT
            customer_id,
            company_name,
            domain,
            industry,
            crm_status,
            subscription_status,
            plan_tier,
            primary_contact_email,
            stripe_customer_id,
            currency,
            mrr,
            csat_score,
            arr - 12 * mrr AS arr_minus_12x_mrr,
            -- Only paying customers have a billing ARR to compare with; NULL = not applicable.
            -- Sales books ARR at list price, so it is compared before discounts.
            CASE WHEN subscription_status = 'active'
                 THEN coalesce(abs(crm_arr - gross_arr) <= 0.05 * gross_arr, false)
            END AS crm_arr_matches_billing,
            coalesce((crm_status = 'active') = (subscription_status = 'active'), false)
                AS crm_status_matches_billing,
            (epoch(CAST($as_of AS TIMESTAMP)) - epoch(source_updated_at)) / 3600.0
                AS source_age_hours
        FROM marts.customers
    """,
    checks=(
        check("completeness", "blocking", DATA_ENG, "expect_table_row_count_to_be_between",
              "The customers mart is not empty", min_value=1),
        check("completeness", "blocking", DATA_ENG, "expect_column_values_to_not_be_null",
              "Every customer has an id", column="customer_id"),
        check("completeness", "blocking", SALES_CS, "expect_column_values_to_not_be_null",
              "Every customer has a company name", column="company_name"),
        check("completeness", "blocking", SALES_CS, "expect_column_values_to_not_be_null",
              "Every customer has a CRM lifecycle status", column="crm_status"),
        check("completeness", "warning", SALES_CS, "expect_column_values_to_not_be_null",
              "At least 95% of customers have a primary contact email",
              column="primary_contact_email", mostly=0.95),
        check("completeness", "warning", SALES_CS, "expect_column_values_to_not_be_null",
              "Every customer has an industry", column="industry"),
        check("validity", "warning", SALES_CS, "expect_column_values_to_match_regex",
              "Primary contact emails are well-formed", column="primary_contact_email",
              regex=EMAIL_REGEX),
        check("validity", "blocking", SALES_CS, "expect_column_values_to_be_in_set",
              "CRM status is trial, active or churned", column="crm_status",
              value_set=["trial", "active", "churned"]),
        check("validity", "blocking", FINANCE, "expect_column_values_to_be_in_set",
              "Subscription status is trialing, active, canceled or none",
              column="subscription_status", value_set=["trialing", "active", "canceled", "none"]),
        check("validity", "warning", FINANCE, "expect_column_values_to_be_in_set",
              "Plan tier is starter, growth or enterprise when set", column="plan_tier",
              value_set=["starter", "growth", "enterprise"]),
        check("validity", "warning", FINANCE, "expect_column_values_to_be_in_set",
              "Billing currency is usd, eur or gbp", column="currency", value_set=CURRENCIES),
        check("validity", "blocking", FINANCE, "expect_column_values_to_be_between",
              "MRR is never negative", column="mrr", min_value=0),
        check("validity", "warning", SUPPORT, "expect_column_values_to_be_between",
              "CSAT is a ratio between 0 and 1 when present", column="csat_score",
              min_value=0, max_value=1),
        check("uniqueness", "blocking", DATA_ENG, "expect_column_values_to_be_unique",
              "One row per customer", column="customer_id"),
        check("uniqueness", "warning", FINANCE, "expect_column_values_to_be_unique",
              "A billing customer maps to one customer", column="stripe_customer_id"),
        check("uniqueness", "warning", SALES_CS, "expect_column_values_to_be_unique",
              "A web domain maps to one customer (duplicates suggest an unmerged company)",
              column="domain"),
        check("consistency", "blocking", DATA_ENG, "expect_column_values_to_be_between",
              "ARR equals 12 x MRR (within a cent)", column="arr_minus_12x_mrr",
              min_value=-0.01, max_value=0.01),
        check("accuracy", "warning", FINANCE, "expect_column_values_to_be_in_set",
              "For active subscriptions, CRM ARR is within 5% of billing ARR",
              column="crm_arr_matches_billing", value_set=[True]),
        check("accuracy", "warning", SALES_CS, "expect_column_values_to_be_in_set",
              "CRM says 'active' exactly when billing says 'active'",
              column="crm_status_matches_billing", value_set=[True]),
        check("timeliness", "warning", DATA_ENG, "expect_column_min_to_be_between",
              f"The freshest customer update is at most {CUSTOMER_FRESHNESS_HOURS} h older "
              "than the as-of time", column="source_age_hours",
              max_value=CUSTOMER_FRESHNESS_HOURS),
    ),
)

REVENUE = Suite(
    entity="revenue",
    table="marts.mrr_by_customer_month",
    owner=FINANCE,
    sql="""
        SELECT
            r.customer_id,
            r.month,
            r.currency,
            r.mrr,
            r.arr - 12 * r.mrr AS arr_minus_12x_mrr,
            date_diff('month', r.month, CAST($as_of AS DATE)) AS months_behind_as_of,
            -- A semi-join, so duplicate customers cannot multiply revenue rows.
            CASE WHEN r.customer_id IS NOT NULL THEN EXISTS (
                SELECT 1 FROM marts.customers AS c WHERE c.customer_id = r.customer_id
            ) END AS customer_known
        FROM marts.mrr_by_customer_month AS r
    """,
    checks=(
        check("completeness", "blocking", DATA_ENG, "expect_table_row_count_to_be_between",
              "The revenue mart is not empty", min_value=1),
        check("completeness", "blocking", DATA_ENG, "expect_column_values_to_not_be_null",
              "Every revenue row names its customer", column="customer_id"),
        check("completeness", "blocking", DATA_ENG, "expect_column_values_to_not_be_null",
              "Every revenue row names its month", column="month"),
        check("completeness", "blocking", FINANCE, "expect_column_values_to_not_be_null",
              "Every revenue row has an MRR", column="mrr"),
        check("uniqueness", "blocking", DATA_ENG, "expect_compound_columns_to_be_unique",
              "One row per customer and month", column_list=["customer_id", "month"]),
        check("validity", "blocking", FINANCE, "expect_column_values_to_be_between",
              "MRR is never negative", column="mrr", min_value=0),
        check("validity", "blocking", FINANCE, "expect_column_values_to_be_in_set",
              "Currency is usd, eur or gbp", column="currency", value_set=CURRENCIES),
        check("consistency", "blocking", DATA_ENG, "expect_column_values_to_be_between",
              "ARR equals 12 x MRR (within a cent)", column="arr_minus_12x_mrr",
              min_value=-0.01, max_value=0.01),
        check("accuracy", "warning", FINANCE, "expect_column_values_to_be_in_set",
              "Every revenue row belongs to a known customer", column="customer_known",
              value_set=[True]),
        check("timeliness", "warning", DATA_ENG, "expect_column_min_to_be_between",
              "The latest month is the month of the as-of date", column="months_behind_as_of",
              min_value=0, max_value=0),
    ),
)

SUITES: dict[str, Suite] = {s.entity: s for s in (CUSTOMER, REVENUE)}


def get_suite(entity: str) -> Suite:
    try:
        return SUITES[entity]
    except KeyError:
        raise ValueError(f"no suite for entity {entity!r}; known: {', '.join(SUITES)}") from None
