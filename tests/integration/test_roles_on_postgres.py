"""The access policy as PostgreSQL's own roles (privacy/access.py, `publish_pg_role_access`): the
session's `small` company run copied onto a PostgreSQL database of the test's own, the roles
granted there, and each role read as PostgreSQL sees it (`SET ROLE spine_<role>`, or a login
member of the role): what it may read it reads, as its DuckDB file holds it; what it may not,
PostgreSQL refuses ("permission denied"). The revenue report reads the same numbers off both."""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import psycopg2
import pytest
import yaml
from postgres_databases import postgres_warehouse

from command_line.sql_shell import run_statements
from data_spine.settings import settings
from data_spine.warehouse import PgConnection, Warehouse
from data_spine.warehouse_transfer import copy_history
from expectations.masking import mask
from privacy.access import (
    AccessDenied,
    connect_as,
    create_pg_login,
    explain,
    pg_role,
    publish_role_access,
    query_as,
    quoted,
)
from privacy.access_policy import POLICY_FILE, load_policy
from privacy.keys import privacy_key, pseudonym
from reporting.revenue_report import build_revenue_report

pytestmark = pytest.mark.usefixtures("first_run")

# What the marts leave in the schemas a role can reach, and what the roles' checks read.
COPIED = ["marts", "serving", "seeds", "quality"]


@pytest.fixture(scope="module")
def granted(first_run) -> Iterator[tuple[Warehouse, dict]]:
    """The run's warehouse on PostgreSQL, the policy applied to it."""
    cfg = settings()
    with postgres_warehouse("spine_roles") as target:
        copy_history(cfg.warehouse, target, schemas=COPIED)
        yield target, publish_role_access(target, cfg.data_dir, cfg)


@pytest.fixture
def as_role(granted):
    """A session acting as the role's database role, names resolving in its schema, then `serving`."""
    target, _ = granted
    opened: list[PgConnection] = []

    def _open(role: str) -> PgConnection:
        opened.append(connect_as(role, settings(), warehouse=target))
        return opened[-1]

    yield _open
    for con in opened:
        con.close()


def refused(con: PgConnection, sql: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
        con.execute(sql)


def served(target: Warehouse, sql: str) -> list[tuple]:
    with target.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def _plain(value):
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)  # an unsigned 64-bit integer of DuckDB's is a numeric of PostgreSQL's
    if isinstance(value, Decimal | float):
        return None if math.isnan(value) else round(float(value), 6)
    return value


def _same_rows(rows: list[tuple]) -> Counter:
    return Counter(tuple(_plain(v) for v in row) for row in rows)


def in_its_file(role: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Dataset -> (columns, rows) of the DuckDB file the run published for the role."""
    with connect_as(role) as con:
        found = {}
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'serving'").fetchall()
        for (dataset,) in tables:
            cursor = con.execute(f"SELECT * FROM serving.{quoted(dataset)}")
            found[dataset] = ([d[0] for d in cursor.description], cursor.fetchall())
        return found


def test_every_role_is_a_nologin_group_role_reading_what_its_file_holds(granted, as_role):
    target, report = granted
    policy = load_policy()
    assert set(report) == set(policy.roles)
    with target.connect(read_only=True) as con:
        roles = con.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(?)", [[pg_role(r) for r in report]]
        ).fetchall()
    assert dict(roles) == {pg_role(r): False for r in report}
    for role, summary in report.items():
        con = as_role(role)
        files = in_its_file(role)
        assert set(files) == set(summary["datasets"]), role
        for dataset, shown in summary["datasets"].items():
            columns, rows = files[dataset]
            # Read as the role: its view, or the columns it reads of `serving`.
            cursor = con.execute(f"SELECT {', '.join(map(quoted, columns))} FROM {quoted(dataset)}")
            assert cursor.columns() == columns, (role, dataset)
            on_postgres = cursor.fetchall()
            assert len(on_postgres) == shown["rows"] == len(rows), (role, dataset)
            assert _same_rows(on_postgres) == _same_rows(rows), (role, dataset)


def test_sales_reads_accounts_people_and_arr_but_no_usage_billing_or_ticket_text(as_role):
    con = as_role("sales")
    assert con.execute("SELECT company_name, owner_id, arr, primary_contact_email FROM customers").fetchall()
    assert con.execute("SELECT full_name, email, job_title FROM serving.contacts").fetchall()
    assert con.execute("SELECT ticket_id, status FROM ticket_metrics").fetchall()
    refused(con, "SELECT lifetime_revenue FROM customers")
    refused(con, "SELECT subject FROM serving.ticket_metrics")
    refused(con, "SELECT * FROM customers")  # every column includes the hidden ones
    refused(con, "SELECT count(*) FROM invoices")
    refused(con, "SELECT count(*) FROM serving.usage_events")
    refused(con, "SELECT count(*) FROM marts.customers")
    refused(con, "SELECT * FROM access_executive.contacts")


def test_customer_success_reads_every_ticket_and_usage_by_customer_and_week(granted, as_role):
    target, _ = granted
    con = as_role("customer_success")
    assert con.execute("SELECT subject, requester_id FROM ticket_metrics").fetchall()
    (events,) = con.execute("SELECT sum(events) FROM usage_events").fetchone()
    assert events == served(target, "SELECT count(*) FROM serving.usage_events")[0][0]
    refused(con, "SELECT user_id FROM serving.usage_events")
    refused(con, "SELECT outstanding_balance FROM customers")
    refused(con, "SELECT count(*) FROM serving.invoices")


def test_finance_reads_revenue_and_masked_names_but_no_contact_email(granted, as_role):
    target, _ = granted
    con = as_role("finance")
    bridge = "SELECT month, closing_mrr, closing_arr FROM {} ORDER BY month"
    assert con.execute(bridge.format("mrr_bridge")).fetchall() == served(target, bridge.format("serving.mrr_bridge"))
    names = con.execute("SELECT full_name FROM contacts WHERE full_name IS NOT NULL").fetchall()
    real = served(target, "SELECT full_name FROM serving.contacts WHERE full_name IS NOT NULL")
    assert sorted(names) == sorted((mask(n),) for (n,) in real)
    refused(con, "SELECT email FROM serving.contacts")
    refused(con, "SELECT full_name FROM serving.contacts")  # only its masked version
    refused(con, "SELECT primary_contact_email FROM serving.customers")
    refused(con, "SELECT count(*) FROM ticket_metrics")
    with pytest.raises(
        AccessDenied, match=r"role 'finance' may not read serving\.contacts\.email \(hidden by privacy/"
    ):
        query_as("finance", "SELECT email FROM serving.contacts", settings(), warehouse=target)


def test_data_science_reads_pseudonymous_ids_and_aggregates_only(granted, as_role):
    target, _ = granted
    con = as_role("data_science")
    key = privacy_key(settings())
    ids = served(target, "SELECT customer_id FROM serving.customers")
    assert sorted(con.execute("SELECT customer_id FROM customers").fetchall()) == sorted(
        (pseudonym(key, i),) for (i,) in ids
    )
    assert con.execute("SELECT health_score FROM serving.customers").fetchall()
    (events,) = con.execute("SELECT sum(events) FROM usage_events").fetchone()
    assert events == served(target, "SELECT count(*) FROM serving.usage_events")[0][0]
    refused(con, "SELECT customer_id FROM serving.customers")
    refused(con, "SELECT company_name FROM serving.customers")
    refused(con, "SELECT count(*) FROM serving.usage_events")
    refused(con, "SELECT count(*) FROM serving.invoices")
    refused(con, "SELECT count(*) FROM contacts")
    # The key was the build's for its transaction only: no setting, table or view holds it.
    assert con.execute("SELECT current_setting('spine.privacy_key', true)").fetchone()[0] in (None, "")


def test_executive_reads_everything_served_and_usage_by_week(granted, as_role):
    target, _ = granted
    con = as_role("executive")
    for table in ("customers", "contacts", "invoices", "customer_crosswalk", "ticket_metrics"):
        assert con.execute(f"SELECT * FROM serving.{table}").fetchall() == served(
            target, f"SELECT * FROM serving.{table}"
        )
    (events,) = con.execute("SELECT sum(events) FROM usage_events").fetchone()
    assert events == served(target, "SELECT count(*) FROM serving.usage_events")[0][0]
    refused(con, "SELECT user_id FROM serving.usage_events")
    refused(con, "SELECT count(*) FROM quality.validation_results")


def test_ai_agent_reads_the_customer_360_without_personal_data(as_role):
    con = as_role("ai_agent")
    assert con.execute("SELECT company_name, mrr, health_score, churn_risk FROM customers").fetchall()
    assert con.execute("SELECT sum(events) FROM usage_events").fetchone()[0] > 0
    refused(con, "SELECT primary_contact_email FROM customers")
    refused(con, "SELECT requester_id FROM ticket_metrics")
    refused(con, "SELECT count(*) FROM contacts")


def test_a_login_member_of_a_role_cannot_step_out_of_it(granted):
    target, _ = granted
    user = f"spine_test_login_{uuid.uuid4().hex[:8]}"
    create_pg_login(target, "finance", user)
    try:
        parts = target.pg_parts()
        with PgConnection(psycopg2.connect(**{**parts, "user": user})) as con:
            # Its schema first, from the login's settings: the masked contacts.
            assert (
                con.execute("SELECT full_name FROM contacts WHERE full_name IS NOT NULL LIMIT 1")
                .fetchone()[0][1:]
                .startswith("***")
            )
            refused(con, "SELECT email FROM serving.contacts")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                con.execute("SET ROLE postgres")
    finally:
        with target.connect() as con:
            con.execute(f"DROP OWNED BY {quoted(user)}")
            con.execute(f"DROP ROLE {quoted(user)}")


def test_a_rebuild_revokes_what_the_policy_no_longer_grants(granted, as_role, tmp_path):
    target, _ = granted
    cfg = settings()
    narrower = yaml.safe_load(POLICY_FILE.read_text())
    del narrower["roles"]["sales"]["datasets"]["ticket_metrics"]
    path = tmp_path / "access_policy.yml"
    path.write_text(yaml.safe_dump(narrower))
    try:
        publish_role_access(target, cfg.data_dir, cfg, load_policy(path))
        con = as_role("sales")
        refused(con, "SELECT ticket_id FROM serving.ticket_metrics")
        assert con.execute("SELECT company_name FROM customers").fetchall()
        assert as_role("customer_success").execute("SELECT ticket_id FROM ticket_metrics").fetchall()
    finally:
        publish_role_access(target, cfg.data_dir, cfg)
    assert as_role("sales").execute("SELECT ticket_id FROM ticket_metrics").fetchall()


def test_spine_sql_as_a_role_tells_postgres_refusal_with_the_rule(granted, capsys):
    target, _ = granted
    with connect_as("finance", settings(), warehouse=target) as con:
        denied = lambda sql, error: explain("finance", con, sql, error)  # noqa: E731
        statements = "SELECT month FROM mrr_bridge; SELECT email FROM serving.contacts"
        assert not run_statements(con, statements, "csv", 10, denied)
    said = capsys.readouterr()
    assert said.out.startswith("month\n")
    assert "role 'finance' may not read serving.contacts.email (hidden by privacy/access_policy.yml" in said.err
    assert "[PostgreSQL: permission denied for table contacts]" in said.err


def test_the_revenue_report_reads_the_same_numbers_on_both_warehouses(granted, tmp_path):
    target, _ = granted
    cfg = settings()
    as_of = cfg.as_of
    on_duckdb = build_revenue_report(cfg.warehouse, tmp_path / "duckdb", as_of)
    on_postgres = build_revenue_report(target, tmp_path / "postgres", as_of)
    for report in (on_duckdb, on_postgres):
        report.pop("generated_at")
    assert json.dumps(on_postgres, sort_keys=True) == json.dumps(on_duckdb, sort_keys=True)
    shutil.rmtree(tmp_path)
