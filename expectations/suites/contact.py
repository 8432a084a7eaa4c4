"""Contact: every contact point of a customer, CRM contacts and billing contacts."""

from expectations.freshness_windows import timeliness_batch
from expectations.suite import DATA_ENG, FINANCE, SALES_CS, Batch, Suite, check, where
from expectations.suites.common import (
    EMAIL_REGEX,
    NAME_MAX_LENGTH,
    hours_after_as_of,
    plain_text_check,
    with_text_problems,
)

_CRM = where("contact_role", "crm_contact")
_BILLING = where("contact_role", "billing")
_FORM_CAUSES = ("the email field is optional on the form or import that created the record",)

CONTACTS = Batch(
    name="contacts",
    key=("contact_key",),
    pii=frozenset({"email", "full_name"}),
    sql=f"""
        select
            contact_key, source_system, source_id, contact_role, customer_id, full_name, email,
            {hours_after_as_of('created_at')} as created_hours_after_as_of,
            case when customer_id is not null then exists (
                select 1 from marts.customers as c where c.customer_id = k.customer_id
            ) end as customer_known,
            {with_text_problems(dict.fromkeys(("full_name", "email", "job_title"), NAME_MAX_LENGTH))}
        from marts.contacts as k
    """,
    checks=(
        check("contacts_not_empty", "completeness", "blocking", DATA_ENG,
              "expect_table_row_count_to_be_between", "The contacts mart is not empty", min_value=1),
        check("contact_key_present", "completeness", "blocking", DATA_ENG,
              "expect_column_values_to_not_be_null", "Every contact has a key", column="contact_key"),
        check("crm_contact_email_present", "completeness", "warning", SALES_CS,
              "expect_column_values_to_not_be_null", "Every CRM contact has an email",
              column="email", causes=_FORM_CAUSES,
              action="Sales ops: add the sampled contacts' emails in the CRM.", **_CRM),
        check("billing_email_present", "completeness", "warning", FINANCE,
              "expect_column_values_to_not_be_null",
              "Every billing contact has an email invoices can be sent to",
              column="email", causes=_FORM_CAUSES,
              action="Finance: add the billing email on the sampled Stripe customers before the "
                     "next invoice run.", **_BILLING),
        check("billing_name_present", "completeness", "warning", FINANCE,
              "expect_column_values_to_not_be_null", "Every billing contact has a bill-to name",
              column="full_name",
              causes=("Stripe customers created by an integration that does not send the name",),
              action="Finance: set the customer name on the sampled Stripe customers.", **_BILLING),
        check("contact_customer_known", "completeness", "warning", DATA_ENG,
              "expect_column_values_to_not_be_null", "Every contact belongs to a known customer",
              column="customer_id"),
        check("crm_contact_email_valid", "validity", "warning", SALES_CS,
              "expect_column_values_to_match_regex", "CRM contact emails are well-formed",
              column="email", regex=EMAIL_REGEX,
              causes=("typos in free-text entry: a missing @ or top-level domain, a doubled @, "
                      "a space or a comma",),
              action="Sales ops: correct the sampled addresses and turn on email validation on "
                     "the CRM's forms.", **_CRM),
        check("billing_email_valid", "validity", "warning", FINANCE,
              "expect_column_values_to_match_regex",
              "Billing emails are well-formed (invoices to them would bounce)",
              column="email", regex=EMAIL_REGEX,
              action="Finance: correct the sampled billing emails in Stripe.", **_BILLING),
        check("contact_created_not_in_future", "validity", "warning", SALES_CS,
              "expect_column_values_to_be_between",
              "No contact was created after the as-of time (hours after it: at most 0)",
              column="created_hours_after_as_of", max_value=0,
              causes=("a client or import with a wrong clock or date format",),
              action="Sales ops: correct the sampled contacts' create dates in the CRM."),
        plain_text_check("contact_name_plain_text", SALES_CS, "full_name", "Contact and bill-to names"),
        plain_text_check("contact_email_plain_text", SALES_CS, "email", "Contact and billing emails"),
        plain_text_check("contact_job_title_plain_text", SALES_CS, "job_title", "Job titles"),
        check("contact_source_system_valid", "validity", "blocking", DATA_ENG,
              "expect_column_values_to_be_in_set", "Contacts come from hubspot or stripe",
              column="source_system", value_set=["hubspot", "stripe"]),
        check("contact_role_valid", "validity", "blocking", DATA_ENG,
              "expect_column_values_to_be_in_set", "A contact's role is crm_contact or billing",
              column="contact_role", value_set=["crm_contact", "billing"]),
        check("contact_key_unique", "uniqueness", "blocking", DATA_ENG,
              "expect_column_values_to_be_unique", "One row per contact point", column="contact_key"),
        check("one_contact_per_source_record", "uniqueness", "blocking", DATA_ENG,
              "expect_compound_columns_to_be_unique", "One row per source record",
              column_list=["source_system", "source_id"]),
        check("contact_customer_exists", "consistency", "blocking", DATA_ENG,
              "expect_column_values_to_be_in_set", "A contact's customer is in the customers mart",
              column="customer_known", value_set=[True]),
    ),
)

SUITE = Suite(
    entity="contact",
    owner=SALES_CS,
    description="The people and addresses we reach customers at: CRM contacts and billing contacts.",
    publishes=("contacts",),
    batches=(CONTACTS, timeliness_batch("contact")),
)
