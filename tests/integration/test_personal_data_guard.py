"""The personal-data guard: after a whole run on the `small` company, no email of anyone
appears in what the pipeline writes besides the data itself: reports (scorecard, revenue
report, GX Data Docs, dbt docs), alerts, dlt's state and working folders, Dagster's run and
event storage and its logs, the quality tables. A change that leaks an email into any of
them fails here."""

from __future__ import annotations

import re

import duckdb
import pytest

from data_spine.settings import settings
from privacy.scan import EMAIL, emails_in_files, emails_in_warehouse
from privacy.warehouse_tables import base_tables, columns_of, quoted

pytestmark = pytest.mark.usefixtures("first_run")


def _sources_emails() -> set[str]:
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        return emails_in_warehouse(con)


def test_no_email_in_reports_alerts_logs_run_storage_or_dlt_state():
    cfg = settings()
    emails = _sources_emails()
    assert len(emails) > 1000, "the sample company has emails: the guard must have something to miss"
    # Alerts: this run dispatches none; the alert-delivery test guards a run that does.
    folders = [cfg.reports_dir, cfg.alerting.log_path.parent, cfg.dlt_dir, cfg.dagster_home]
    assert all(f.exists() for f in (cfg.reports_dir, cfg.dlt_dir, cfg.dagster_home))
    assert emails_in_files(folders, emails) == {}


def test_no_email_in_the_tables_the_pipeline_writes_about_the_data():
    """The quality schema (validation results, audits, publications, monitors) and dlt's
    bookkeeping describe the data; they never copy a person into it."""
    found = {}
    pattern = EMAIL.pattern.decode()
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        for schema, table in base_tables(con):
            if schema != "quality" and not table.startswith("_dlt_"):
                continue
            for column in columns_of(con, schema, table):
                n = con.execute(
                    f"select count(*) from {quoted(schema)}.{quoted(table)} "
                    f"where regexp_matches(CAST({quoted(column)} AS VARCHAR), ?)",
                    [pattern],
                ).fetchone()[0]
                if n:
                    found[f"{schema}.{table}.{column}"] = n
    assert found == {}


def test_the_guard_finds_an_email_where_one_leaks(tmp_path):
    leaked = tmp_path / "reports" / "page.html"
    leaked.parent.mkdir()
    leaked.write_text("<td>Contact: Jane.Doe@customer-company.io</td><td>docs@example.com</td>")
    assert emails_in_files([tmp_path / "reports"]) == {"reports/page.html": 1}
    assert emails_in_files([tmp_path / "reports"], {"jane.doe@customer-company.io"}) == {"reports/page.html": 1}
    assert emails_in_files([tmp_path / "reports"], {"someone@else.io"}) == {}
    assert re.search(EMAIL, b"jane@customer.io")
