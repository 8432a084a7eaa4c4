"""Customer: the Customer 360, the crosswalk from every source id to a customer, and the CRM
companies it is built from."""

from expectations.freshness_windows import timeliness_batch
from expectations.suite import DATA_ENG, FINANCE, SALES_CS, SUPPORT, Batch, Suite, check, where
from expectations.suites.common import (
    CURRENCIES,
    EMAIL_REGEX,
    NAME_MAX_LENGTH,
    PLAN_TIERS,
    plain_text_check,
    with_text_problems,
)

# What the CRM and billing let people type, and consumers display.
_FREE_TEXT = ("company_name", "domain", "primary_contact_name", "primary_contact_email")

CUSTOMERS = Batch(
    name="customers",
    key=("customer_id",),
    pii=frozenset({"primary_contact_email"}),
    sql=f"""
        select
            customer_id, hubspot_company_id, stripe_customer_id, company_name, domain, crm_status,
            -- A customer known to the CRM has its company record; one known only to billing,
            -- support or the product (no rule linked it) has no CRM name to have.
            case when hubspot_company_id is not null then 'crm' else 'outside_crm' end as known_to,
            status, subscription_status, plan_tier, currency, primary_contact_email, mrr,
            health_score, churn_risk, csat_score,
            arr - 12 * mrr as arr_minus_12x_mrr,
            -- Only paying customers have a billing ARR to compare with; null = not applicable.
            -- Sales books ARR at list price, so it is compared before discounts.
            case when subscription_status = 'active'
                 then coalesce(abs(crm_arr - gross_arr) <= 0.05 * gross_arr, false) end
                as crm_arr_matches_billing,
            case when crm_status is not null
                 then (crm_status = 'active') = (subscription_status = 'active') end
                as crm_status_matches_billing,
            mrr - coalesce((
                select m.mrr from marts.mrr_by_customer_month as m
                where m.customer_id = c.customer_id and m.month = date_trunc('month', $as_of)
            ), 0) as mrr_minus_monthly_mart,
            {with_text_problems(dict.fromkeys(_FREE_TEXT, NAME_MAX_LENGTH))}
        from marts.customers as c
    """,
    checks=(
        check(
            "customers_not_empty",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_table_row_count_to_be_between",
            "The customers mart is not empty",
            min_value=1,
        ),
        check(
            "customer_id_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every customer has an id",
            column="customer_id",
        ),
        # HubSpot does not require a company's name: a nameless company is a finding to fix
        # in the CRM, not a reason to hold every customer back.
        check(
            "company_name_present",
            "completeness",
            "warning",
            SALES_CS,
            "expect_column_values_to_not_be_null",
            "Every customer in the CRM has a company name",
            column="company_name",
            **where("known_to", "crm"),
            action="Sales ops: name the sampled companies in the CRM.",
        ),
        check(
            "status_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every customer has a lifecycle status",
            column="status",
        ),
        check(
            "primary_contact_email_present",
            "completeness",
            "warning",
            SALES_CS,
            "expect_column_values_to_not_be_null",
            "At least 95% of customers have a primary contact email",
            column="primary_contact_email",
            mostly=0.95,
        ),
        check(
            "status_valid",
            "validity",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_in_set",
            "Status is trial, active, paused, churned or none",
            column="status",
            value_set=["trial", "active", "paused", "churned", "none"],
        ),
        # The CRM's status is a custom property whose values are the account's own: a value
        # outside the usual three is a finding, never a reason to hold the customers back.
        check(
            "crm_status_valid",
            "validity",
            "warning",
            SALES_CS,
            "expect_column_values_to_be_in_set",
            "CRM status is trial, active or churned",
            column="crm_status",
            value_set=["trial", "active", "churned"],
        ),
        check(
            "subscription_status_valid",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "Subscription status is trialing, active, canceled or none",
            column="subscription_status",
            value_set=["trialing", "active", "canceled", "none"],
        ),
        check(
            "plan_tier_valid",
            "validity",
            "warning",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "Plan tier, when set, is one the business sells (dbt var plan_tiers), not unmapped",
            column="plan_tier",
            value_set=PLAN_TIERS,
            causes=(
                "a price whose lookup key or product the plan_tiers seed does not map and whose "
                "product's metadata names no tier",
            ),
            action="Map the sampled customers' prices in the plan_tiers seed, or set the tier in "
            "the product's metadata in billing.",
        ),
        check(
            "currency_valid",
            "validity",
            "warning",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "Billing currency has a planning rate (exchange_rates seed)",
            column="currency",
            value_set=CURRENCIES,
        ),
        check(
            "mrr_not_negative",
            "validity",
            "blocking",
            FINANCE,
            "expect_column_values_to_be_between",
            "MRR is never negative",
            column="mrr",
            min_value=0,
        ),
        check(
            "health_score_in_range",
            "validity",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "Health score is between 0 and 100",
            column="health_score",
            min_value=0,
            max_value=100,
        ),
        check(
            "churn_risk_valid",
            "validity",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_in_set",
            "Churn risk is low, medium or high when scored",
            column="churn_risk",
            value_set=["low", "medium", "high"],
        ),
        check(
            "csat_in_range",
            "validity",
            "warning",
            SUPPORT,
            "expect_column_values_to_be_between",
            "CSAT is a ratio between 0 and 1 when present",
            column="csat_score",
            min_value=0,
            max_value=1,
        ),
        check(
            "primary_contact_email_valid",
            "validity",
            "warning",
            SALES_CS,
            "expect_column_values_to_match_regex",
            "Primary contact emails are well-formed",
            column="primary_contact_email",
            regex=EMAIL_REGEX,
        ),
        plain_text_check(
            "company_name_plain_text",
            SALES_CS,
            "company_name",
            "Company names",
            action="Sales ops: correct the sampled companies' names in the CRM.",
        ),
        plain_text_check(
            "domain_plain_text",
            SALES_CS,
            "domain",
            "Company web domains",
            action="Sales ops: correct the sampled companies' domains in the CRM.",
        ),
        plain_text_check("primary_contact_name_plain_text", SALES_CS, "primary_contact_name", "Primary contact names"),
        plain_text_check(
            "primary_contact_email_plain_text", SALES_CS, "primary_contact_email", "Primary contact emails"
        ),
        check(
            "customer_id_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "One row per customer",
            column="customer_id",
            causes=(
                "identity resolution put one customer on two rows",
                "a join in the customers model multiplies rows",
            ),
            action="Find the model step that repeats the customer (dbt build output, "
            "int_customer_identity) and rebuild the marts.",
        ),
        check(
            "hubspot_company_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "A CRM company belongs to one customer",
            column="hubspot_company_id",
        ),
        check(
            "stripe_customer_unique",
            "uniqueness",
            "warning",
            FINANCE,
            "expect_column_values_to_be_unique",
            "A billing customer is the main one of one customer",
            column="stripe_customer_id",
        ),
        check(
            "domain_unique",
            "uniqueness",
            "warning",
            SALES_CS,
            "expect_column_values_to_be_unique",
            "A web domain belongs to one customer (duplicates suggest an unmerged company)",
            column="domain",
        ),
        check(
            "arr_is_12x_mrr",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "ARR equals 12 x MRR (within a cent)",
            column="arr_minus_12x_mrr",
            min_value=-0.01,
            max_value=0.01,
        ),
        check(
            "mrr_matches_monthly_mart",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "A customer's MRR equals its row of mrr_by_customer_month for the as-of month",
            column="mrr_minus_monthly_mart",
            min_value=-0.01,
            max_value=0.01,
        ),
        check(
            "crm_arr_matches_billing",
            "accuracy",
            "warning",
            FINANCE,
            "expect_column_values_to_be_in_set",
            "For active subscriptions, CRM ARR is within 5% of billing ARR (at list price)",
            column="crm_arr_matches_billing",
            value_set=[True],
            causes=("ARR typed into the CRM by hand and not updated after an upgrade, downgrade or discount",),
            action="Sales ops: update the CRM's annual revenue from billing for the sampled "
            "customers, or sync it automatically.",
        ),
        check(
            "crm_status_matches_billing",
            "accuracy",
            "warning",
            SALES_CS,
            "expect_column_values_to_be_in_set",
            "The CRM says 'active' exactly when billing has an active subscription",
            column="crm_status_matches_billing",
            value_set=[True],
            causes=("a customer cancelled in billing but the CRM status was never changed",),
            action="CS: confirm the sampled customers' state and correct the CRM status; "
            "churned customers marked active hide retention risk.",
        ),
    ),
)

CROSSWALK = Batch(
    name="customer_crosswalk",
    key=("source_key",),
    sql="""
        select
            source_key, source_system, source_id, customer_id, match_rule,
            exists (select 1 from marts.customers as c where c.customer_id = x.customer_id)
                as customer_known
        from marts.customer_crosswalk as x
    """,
    checks=(
        check(
            "crosswalk_customer_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every source id is given a customer",
            column="customer_id",
        ),
        check(
            "crosswalk_source_system_valid",
            "validity",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_in_set",
            "Source systems are hubspot, stripe, zendesk or product",
            column="source_system",
            value_set=["hubspot", "stripe", "zendesk", "product"],
        ),
        check(
            "one_customer_per_source_id",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_compound_columns_to_be_unique",
            "Every source id maps to exactly one customer",
            column_list=["source_system", "source_id"],
        ),
        check(
            "crm_company_not_duplicated",
            "uniqueness",
            "warning",
            SALES_CS,
            "expect_column_values_to_not_be_in_set",
            "No company is entered twice in the CRM (duplicates are merged into the original)",
            column="match_rule",
            value_set=["crm_duplicate_domain", "crm_duplicate_name"],
            **where("source_system", "hubspot"),
            causes=(
                "a rep created the company again instead of finding the existing record",
                "an import without duplicate detection",
            ),
            action="Sales ops: merge the sampled companies into their originals in the CRM; "
            "the Customer 360 already counts them once.",
        ),
        check(
            "crosswalk_customer_known",
            "consistency",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_in_set",
            "Every customer of the crosswalk is in customers",
            column="customer_known",
            value_set=[True],
        ),
    ),
)

CRM_COMPANIES = Batch(
    name="crm_companies",
    key=("company_id",),
    sql="""
        select
            company_id,
            nullif(concat_ws(', ',
                case when industry is null then 'industry' end,
                case when owner_id is null then 'owner' end), '') as missing_required_fields
        from staging.stg_hubspot__companies
    """,
    checks=(
        check(
            "crm_company_required_fields",
            "completeness",
            "warning",
            SALES_CS,
            "expect_column_values_to_be_null",
            "Every CRM company has an industry and an account owner",
            column="missing_required_fields",
            causes=(
                "industry and owner are optional on the CRM's company form",
                "companies created by an import or integration without them",
            ),
            action="Sales ops: fill industry and owner on the sampled companies and make both "
            "required on the company form.",
        ),
    ),
)

IDENTITY = Batch(
    name="identity_resolution_metrics",
    key=("source_system",),
    sql="select source_system, match_rate, orphan_rate from marts.identity_resolution_metrics",
    checks=(
        check(
            "match_rate_in_range",
            "validity",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_between",
            "Match rates are ratios between 0 and 1",
            column="match_rate",
            min_value=0,
            max_value=1,
        ),
    ),
)

SUITE = Suite(
    entity="customer",
    owner=SALES_CS,
    description="The Customer 360 and the map from every source id to its customer.",
    publishes=("customers", "customer_crosswalk", "identity_resolution_metrics"),
    batches=(CUSTOMERS, CROSSWALK, CRM_COMPANIES, IDENTITY, timeliness_batch("customer")),
)
