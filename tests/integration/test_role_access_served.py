"""What each role reads after a real run of the `small` company: the files the pipeline's
`role_access` step published, read as the role reads them (`spine sql --role`)."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from data_spine.settings import PROJECT_ROOT, settings
from privacy.access import AccessDenied, query_as

pytestmark = pytest.mark.usefixtures("first_run")


def _served(sql: str) -> list[tuple]:
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _values(rows: list[tuple]) -> set[str]:
    return {str(v).lower() for row in rows for v in row if v is not None}


def _emails() -> set[str]:
    return {e.lower() for (e,) in _served("select email from serving.contacts where email is not null")}


def test_finance_reads_revenue_but_no_contact_email():
    bridge = query_as("finance", "select month, closing_mrr, closing_arr from mrr_bridge order by month")
    assert bridge.rows == _served("select month, closing_mrr, closing_arr from serving.mrr_bridge order by month")
    per_customer = query_as("finance", "select sum(mrr) from mrr_by_customer_month")
    assert per_customer.rows == _served("select sum(mrr) from serving.mrr_by_customer_month")
    with pytest.raises(AccessDenied, match=r"role 'finance' may not read serving\.contacts\.email"):
        query_as("finance", "select email from contacts")
    everything = (
        query_as("finance", "select * from contacts").rows + query_as("finance", "select * from customers").rows
    )
    assert not _values(everything) & _emails()


def test_data_science_reads_only_pseudonymous_ids_and_aggregates():
    customers = query_as("data_science", "select * from customers")
    served_ids = _values(_served("select customer_id, hubspot_company_id, stripe_customer_id from serving.customers"))
    assert customers.rows and not _values(customers.rows) & (served_ids | _emails())
    names = _values(_served("select company_name, primary_contact_name from serving.customers"))
    assert not _values(customers.rows) & names
    assert all(str(v).startswith("p_") for (v,) in query_as("data_science", "select customer_id from customers").rows)
    with pytest.raises(AccessDenied, match=r"serving\.usage_events\.user_id"):
        query_as("data_science", "select user_id from usage_events")
    events = query_as("data_science", "select sum(events) from usage_events").rows[0][0]
    assert events == _served("select count(*) from serving.usage_events")[0][0]
    with pytest.raises(AccessDenied, match=r"serving\.contacts"):
        query_as("data_science", "select * from contacts")


def test_ai_agent_reads_the_customer_360_without_personal_data():
    customers = query_as("ai_agent", "select * from customers")
    assert len(customers.rows) == _served("select count(*) from serving.customers")[0][0]
    assert {"company_name", "mrr", "health_score", "churn_risk", "open_tickets"} <= set(customers.columns)
    assert not {"primary_contact_name", "primary_contact_email"} & set(customers.columns)
    # People's names (a billing contact's name is the company's, which the 360 shows).
    contacts_names = _values(_served("select full_name from serving.contacts where contact_role = 'crm_contact'"))
    assert not _values(customers.rows) & (_emails() | contacts_names)
    with pytest.raises(AccessDenied, match=r"role 'ai_agent' may not read serving\.customers\.primary_contact_email"):
        query_as("ai_agent", "select primary_contact_email from customers")


def test_a_forbidden_read_through_spine_sql_fails_with_the_rule():
    done = subprocess.run(
        [sys.executable, "-m", "command_line.main", "sql", "--role", "finance", "select email from contacts"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "role 'finance' may not read serving.contacts.email (hidden by privacy/access_policy.yml" in done.stderr
