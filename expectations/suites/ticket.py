"""Ticket: support requests, how they were handled, and the daily backlog."""

from expectations.freshness_windows import timeliness_batch
from expectations.suite import DATA_ENG, SUPPORT, Batch, Suite, check
from expectations.suites.common import SUBJECT_MAX_LENGTH, plain_text_check, with_text_problems

TICKETS = Batch(
    name="ticket_metrics",
    key=("ticket_id",),
    sql=f"""
        select
            ticket_id, customer_id, organization_id, subject, status, priority, satisfaction_score,
            first_reply_minutes, full_resolution_minutes,
            -- A ticket filed under an organization must be one we know; null = no organization.
            case when organization_id is not null then customer_id is not null end
                as organization_known,
            case when status in ('solved', 'closed') then solved_at is not null end
                as solved_ticket_has_solved_at,
            {with_text_problems({"subject": SUBJECT_MAX_LENGTH})}
        from marts.ticket_metrics
    """,
    checks=(
        check(
            "tickets_not_empty",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_table_row_count_to_be_between",
            "The tickets mart is not empty",
            min_value=1,
        ),
        check(
            "ticket_id_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every ticket has an id",
            column="ticket_id",
        ),
        check(
            "ticket_subject_present",
            "completeness",
            "warning",
            SUPPORT,
            "expect_column_values_to_not_be_null",
            "Every ticket has a subject",
            column="subject",
            causes=("tickets created through the API or email without a subject line",),
            action="Support ops: make the subject required in the ticket forms and API "
            "integrations; give the sampled tickets one.",
        ),
        check(
            "ticket_status_valid",
            "validity",
            "blocking",
            SUPPORT,
            "expect_column_values_to_be_in_set",
            "Status is new, open, pending, hold, solved or closed",
            column="status",
            value_set=["new", "open", "pending", "hold", "solved", "closed"],
        ),
        check(
            "ticket_priority_valid",
            "validity",
            "warning",
            SUPPORT,
            "expect_column_values_to_be_in_set",
            "Priority is low, normal, high or urgent",
            column="priority",
            value_set=["low", "normal", "high", "urgent"],
        ),
        check(
            "satisfaction_valid",
            "validity",
            "warning",
            SUPPORT,
            "expect_column_values_to_be_in_set",
            "A satisfaction rating is good or bad",
            column="satisfaction_score",
            value_set=["good", "bad"],
        ),
        plain_text_check(
            "ticket_subject_plain_text",
            SUPPORT,
            "subject",
            "Ticket subjects",
            SUBJECT_MAX_LENGTH,
            action="Support ops: correct the sampled tickets' subjects; check the integration "
            "or email channel that created them.",
        ),
        check(
            "first_reply_not_negative",
            "validity",
            "blocking",
            SUPPORT,
            "expect_column_values_to_be_between",
            "First reply times are never negative",
            column="first_reply_minutes",
            min_value=0,
        ),
        check(
            "ticket_id_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "One row per ticket",
            column="ticket_id",
        ),
        check(
            "ticket_organization_known",
            "consistency",
            "warning",
            SUPPORT,
            "expect_column_values_to_be_in_set",
            "Every ticket's organization exists in the support desk and belongs to a customer",
            column="organization_known",
            value_set=[True],
            causes=(
                "the ticket points at an organization that was deleted or never synced",
                "an integration creating tickets with a wrong organization id",
            ),
            action="Support ops: reassign the sampled tickets to their customer's organization.",
        ),
        check(
            "solved_tickets_have_solved_at",
            "consistency",
            "blocking",
            SUPPORT,
            "expect_column_values_to_be_in_set",
            "Every solved or closed ticket has a solve time",
            column="solved_ticket_has_solved_at",
            value_set=[True],
        ),
    ),
)

BACKLOG = Batch(
    name="support_backlog_daily",
    key=("activity_date",),
    sql="""
        select activity_date, open_tickets, tickets_opened, tickets_solved
        from marts.support_backlog_daily
    """,
    checks=(
        check(
            "backlog_day_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "One backlog row per day",
            column="activity_date",
        ),
        check(
            "backlog_not_negative",
            "validity",
            "blocking",
            SUPPORT,
            "expect_column_values_to_be_between",
            "The open backlog is never negative",
            column="open_tickets",
            min_value=0,
        ),
    ),
)

SUITE = Suite(
    entity="ticket",
    owner=SUPPORT,
    description="Support tickets, how they were handled and the daily backlog.",
    publishes=("ticket_metrics", "support_backlog_daily"),
    batches=(TICKETS, BACKLOG, timeliness_batch("ticket")),
)
