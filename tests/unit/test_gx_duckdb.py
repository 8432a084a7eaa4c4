"""The Great Expectations adapter for DuckDB (`expectations/gx_duckdb.py`), on a real DuckDB file.

Shows the failure the adapter exists for (stock GX on DuckDB computes nothing), then every
expectation type the suites use, evaluated in the database with exact counts, and that the
file is released for a writer as soon as a validation ends; then GX's Data Docs built from the
validation results (`expectations/gx_data_docs.py`).
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import duckdb
import great_expectations as gx
import pytest

from expectations import gx_data_docs
from expectations.gx_data_docs import build_index, page_file, page_url, update_data_docs
from expectations.gx_engine import evaluate, evaluate_batches, render_sql
from expectations.suite import Batch, Suite, check, where
from expectations.suites import SUITES

AS_OF = datetime(2026, 11, 21)

TABLE = """
CREATE SCHEMA marts;
CREATE TABLE marts.things AS
SELECT
    i AS id,
    CASE WHEN i % 10 = 0 THEN 'Viewed Dashboard' ELSE 'app.viewed.dashboard' END AS event_name,
    CASE WHEN i % 25 = 0 THEN NULL ELSE 'user' || i || '@example.com' END AS email,
    CASE WHEN i <= 500 THEN 'crm' ELSE 'billing' END AS role,
    i * 1.5 AS amount,
    TIMESTAMP '2026-11-20 00:00:00' + INTERVAL (i) MINUTE AS happened_at
FROM range(1, 1001) AS t(i);
INSERT INTO marts.things SELECT * FROM marts.things WHERE id IN (7, 8);
"""
ROWS = 1002
# Checks several tests run.
ROWS_CHECK = check("rows", "completeness", "blocking", "o", "expect_table_row_count_to_be_between", "d", min_value=1)
EMAIL_CHECK = check("email", "completeness", "warning", "o", "expect_column_values_to_not_be_null", "d", column="email")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gx") / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(TABLE)
    return path


def test_stock_gx_cannot_compute_a_metric_on_duckdb(warehouse):
    """Why the adapter exists: GX reads rows after closing DuckDB's connection."""
    context = gx.get_context(mode="ephemeral")
    datasource = context.data_sources.add_sql(
        "stock", connection_string=f"duckdb:///{warehouse}", kwargs={"connect_args": {"read_only": True}}
    )
    batch = (
        datasource.add_table_asset("things", table_name="things", schema_name="marts")
        .add_batch_definition_whole_table("all")
        .get_batch()
    )
    result = batch.validate(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))
    assert not result.success
    assert "list index out of range" in str(result.exception_info)
    datasource.get_execution_engine().close()
    datasource.get_engine().dispose()


def _batch(*checks, key=("id",)) -> Batch:
    return Batch("things", "select * from marts.things where happened_at < $as_of", tuple(checks), key=key)


def test_every_expectation_type_the_suites_use_runs_in_duckdb(warehouse):
    used = {c.expectation for s in SUITES.values() for c in s.checks}
    checks = (
        ROWS_CHECK,
        EMAIL_CHECK,
        check("email_null", "completeness", "warning", "o", "expect_column_values_to_be_null", "d", column="email"),
        check("unique", "uniqueness", "blocking", "o", "expect_column_values_to_be_unique", "d", column="id"),
        check(
            "compound",
            "uniqueness",
            "blocking",
            "o",
            "expect_compound_columns_to_be_unique",
            "d",
            column_list=["id", "role"],
        ),
        check(
            "amount",
            "validity",
            "blocking",
            "o",
            "expect_column_values_to_be_between",
            "d",
            column="amount",
            min_value=0,
            max_value=1200,
        ),
        check(
            "role",
            "validity",
            "blocking",
            "o",
            "expect_column_values_to_be_in_set",
            "d",
            column="role",
            value_set=["crm"],
        ),
        check(
            "not_role",
            "validity",
            "blocking",
            "o",
            "expect_column_values_to_not_be_in_set",
            "d",
            column="role",
            value_set=["billing"],
        ),
        check(
            "name",
            "validity",
            "warning",
            "o",
            "expect_column_values_to_match_regex",
            "d",
            column="event_name",
            regex=r"^[a-z]+\.[a-z]+\.[a-z]+$",
        ),
        check(
            "min", "timeliness", "warning", "o", "expect_column_min_to_be_between", "d", column="amount", max_value=1
        ),
        check(
            "billing_email",
            "completeness",
            "warning",
            "o",
            "expect_column_values_to_not_be_null",
            "d",
            column="email",
            **where("role", "billing"),
        ),
    )
    assert used <= {c.expectation for c in checks}, "a suite uses an expectation type this test does not cover"
    # Rows before the as-of time: minutes 1..1439 of the day before, i.e. every row.
    outcomes = dict(zip([c.name for c in checks], evaluate(warehouse, [_batch(*checks)], AS_OF)["things"]))
    counts = {name: (o.success, o.unexpected_count, o.element_count) for name, o in outcomes.items()}
    assert counts == {
        "rows": (True, 0, 1),
        "email": (False, 40, ROWS),  # every 25th id has no email
        "email_null": (False, ROWS - 40, ROWS),  # null checks judge every row
        "unique": (False, 4, ROWS),  # ids 7 and 8 twice: every copy counts
        "compound": (False, 4, ROWS),
        "amount": (False, 200, ROWS),  # 1.5 x id > 1200 for ids 801..1000
        "role": (False, 500, ROWS),
        "not_role": (False, 500, ROWS),
        "name": (False, 100, ROWS),
        "min": (False, 1, 1),
        "billing_email": (False, 20, 500),  # the row condition keeps the 500 billing rows
    }
    assert outcomes["min"].observed_value == 1.5
    assert all(o.error is None for o in outcomes.values())
    # Failing records come with the batch's key, as the scorecard shows them.
    assert {"id": 10, "event_name": "Viewed Dashboard"} in outcomes["name"].sample


def test_regex_searches_like_gx_everywhere_else(warehouse):
    """DuckDB's `~` matches whole strings; GX's pandas and Spark engines search."""
    checks = (
        check(
            "contains",
            "validity",
            "warning",
            "o",
            "expect_column_values_to_match_regex",
            "d",
            column="event_name",
            regex=r"viewed",
        ),
        check(
            "not_contains",
            "validity",
            "warning",
            "o",
            "expect_column_values_to_not_match_regex",
            "d",
            column="event_name",
            regex=r"Dashboard",
        ),
    )
    contains, not_contains = evaluate(warehouse, [_batch(*checks)], AS_OF)["things"]
    assert (contains.success, contains.unexpected_count) == (False, 100)  # "Viewed" has a capital V
    assert (not_contains.success, not_contains.unexpected_count) == (False, 100)


def test_as_of_is_bound_in_the_sql(warehouse):
    [outcome] = evaluate(warehouse, [_batch(ROWS_CHECK)], datetime(2026, 11, 20, 0, 10))["things"]
    assert outcome.observed_value == 11  # minutes 1..9, and the second copies of 7 and 8
    assert render_sql("with x as (select $as_of) select * from x", AS_OF).startswith("select * from (with x")


def test_a_failing_query_is_an_error_not_a_crash(warehouse):
    batch = Batch(
        "missing",
        "select * from marts.nowhere",
        (ROWS_CHECK,),
    )
    [outcome] = evaluate(warehouse, [batch], AS_OF)["missing"]
    assert not outcome.success and "nowhere" in outcome.error


def test_the_file_is_released_for_a_writer(warehouse):
    evaluate(warehouse, [_batch(ROWS_CHECK)], AS_OF)
    # DuckDB refuses a read-write open while a read-only connection of this process is open.
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select count(*) from marts.things").fetchone() == (ROWS,)


def test_the_adapter_is_pinned_to_its_gx_version():
    from expectations import gx_duckdb

    assert gx.__version__ == gx_duckdb.GX_VERSION


def test_a_batch_computed_once_gives_what_it_gives_where_it_lies(warehouse):
    """A batch's rows go to a temporary table before GX's metric queries run over them: the
    outcomes, samples included, are those of the batch read where it lies."""
    sql = """
        select t.id, t.email, t.role,
            (select count(*) from marts.things as o where o.id = t.id) as copies
        from marts.things as t
    """
    checks = (
        ROWS_CHECK,
        EMAIL_CHECK,
        check("once", "uniqueness", "blocking", "o", "expect_column_values_to_be_unique", "d", column="id"),
        check(
            "single",
            "uniqueness",
            "warning",
            "o",
            "expect_column_values_to_be_between",
            "d",
            column="copies",
            max_value=1,
        ),
        check(
            "crm_email",
            "completeness",
            "warning",
            "o",
            "expect_column_values_to_not_be_null",
            "d",
            column="email",
            **where("role", "crm"),
        ),
    )
    copied = evaluate(warehouse, [Batch("things", sql, checks, key=("id",))], AS_OF)["things"]
    in_place = evaluate(warehouse, [Batch("things", sql, checks, key=("id",), materialize=False)], AS_OF)["things"]

    def seen(outcome):
        return (outcome.success, outcome.element_count, outcome.unexpected_count, sorted(map(str, outcome.sample)))

    assert [seen(o) for o in copied] == [seen(o) for o in in_place]
    assert [(o.unexpected_count, o.error) for o in copied] == [(0, None), (40, None), (4, None), (4, None), (20, None)]


def test_an_audit_of_what_changed_checks_the_rows_written_last(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE SCHEMA marts; CREATE TABLE marts.events AS SELECT i AS id, "
            "CASE WHEN i % 2 = 0 THEN NULL ELSE 'x' END AS name, "
            "TIMESTAMP '2026-11-20' + INTERVAL (i >= 90) DAY AS refreshed_at FROM range(100) AS t(i)"
        )
    present = check("named", "completeness", "warning", "o", "expect_column_values_to_not_be_null", "d", column="name")
    batch = Batch("events", "select * from marts.events where $written_last", (present,), incremental="marts.events")
    [slice_] = evaluate(path, [batch], AS_OF, whole_history=False)["events"]
    [whole] = evaluate(path, [batch], AS_OF, whole_history=True)["events"]
    assert (slice_.element_count, slice_.unexpected_count) == (10, 5)  # the ten rows of the last build
    assert (whole.element_count, whole.unexpected_count) == (100, 50)
    with pytest.raises(ValueError, match="go together"):
        Batch("events", "select * from marts.events where $written_last", (present,))


def _data_docs_suite(*batches: Batch) -> Suite:
    return Suite("thing", "o", "Things.", publishes=(), batches=batches)


def test_data_docs_show_every_expectation_masked_and_escaped(warehouse, tmp_path):
    """GX's own Data Docs of an audit: a page per batch with every expectation and its
    observed value, personal data masked and values escaped (GX's views print them raw)."""
    unique_email = check(
        "email_once",
        "uniqueness",
        "warning",
        "o",
        "expect_column_values_to_be_unique",
        "<b>One</b> & only",
        column="email",
    )
    checks = (ROWS_CHECK, EMAIL_CHECK, unique_email)
    things = Batch("things", "select * from marts.things", checks, key=("id",), pii=frozenset({"email"}))
    hostile = Batch(
        "labels",
        "select id, if(id % 100 = 0, '<img src=x onerror=alert(1)>', 'ok') as label from marts.things",
        (
            check(
                "label",
                "validity",
                "warning",
                "o",
                "expect_column_values_to_be_in_set",
                "d",
                column="label",
                value_set=["ok"],
            ),
        ),
    )
    suite = _data_docs_suite(things, hostile)
    validations = evaluate_batches(warehouse, suite.batches, AS_OF).validations
    validated_at = datetime(2026, 11, 21, 6, 0, 0, 123456)
    pages = update_data_docs(tmp_path, suite, "run-1", validated_at, validations)

    assert pages == [page_file(tmp_path, "thing", "run-1", validated_at, b) for b in ("things", "labels")]
    things_page, labels_page = (p.read_text() for p in pages)
    assert all(html.escape(c.description) in things_page for c in things.checks)
    assert f">{ROWS}</div>" in things_page, "the row count's observed value"
    assert "u***@example.com" in things_page and "user7@example.com" not in things_page
    assert "&lt;img src=x onerror=alert(1)&gt;" in labels_page
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.suffix in (".html", ".json"))
    assert "<img src=x" not in written and "<b>One" not in written and "&amp;lt;" not in written
    assert "user7@example.com" not in written and "user8@example.com" not in written

    index = build_index(tmp_path)
    assert index == tmp_path / "gx_data_docs" / "index.html"
    assert page_url("thing", "run-1", validated_at, "things").removeprefix("gx_data_docs/") in index.read_text()


def test_data_docs_keep_the_latest_audit_of_the_latest_runs(warehouse, tmp_path, monkeypatch):
    monkeypatch.setattr(gx_data_docs, "RUNS_KEPT", 2)
    suite = _data_docs_suite(_batch(ROWS_CHECK))
    validations = evaluate_batches(warehouse, suite.batches, AS_OF).validations
    audits = [("run-1", 1), ("run-2", 2), ("run-3", 3), ("run-3", 4)]  # run-3's step retried
    for run_id, hour in audits:
        update_data_docs(tmp_path, suite, run_id, datetime(2026, 11, 21, hour), validations)
    build_index(tmp_path)

    kept = {(p.parent.parent.name, p.parent.name) for p in (tmp_path / "gx_validation_results").rglob("*.json")}
    assert kept == {("run-2", "20261121T020000.000000Z"), ("run-3", "20261121T040000.000000Z")}
    pages = tmp_path / "gx_data_docs" / "validations" / "thing"
    assert {(p.parent.parent.name, p.parent.name) for p in pages.rglob("*.html")} == kept
    assert sorted(p.name for p in pages.iterdir()) == ["run-2", "run-3"], "no empty folder of a dropped run"
