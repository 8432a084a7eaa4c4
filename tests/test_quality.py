"""Quality layer: suites, runner, results table and scorecard on real DuckDB files.

Great Expectations takes seconds to import, so every validation run happens in a
module-scoped fixture and the tests only read what those runs recorded.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from expectations.runner import RESULTS_TABLE, mask_email, validate_all, validate_entity
from expectations.scorecard import band, build_scorecard, format_summary
from expectations.suites import DIMENSIONS, SUITES

AS_OF = date(2025, 6, 15)
N_CUSTOMERS = 20  # 1-14 active, 15-17 trial, 18-20 churned

MARTS_SQL = """
CREATE SCHEMA marts;
CREATE TABLE marts.customers AS
SELECT
    printf('cus_%03d', i) AS customer_id,
    'Company ' || i AS company_name,
    'company' || i || '.com' AS domain,
    ['Software', 'Healthcare', 'Finance'][i % 3 + 1] AS industry,
    'owner_' || i % 4 AS owner_id,
    CASE WHEN i <= 14 THEN 'active' WHEN i <= 17 THEN 'trial' ELSE 'churned' END AS crm_status,
    CASE WHEN i <= 14 THEN 'active' WHEN i <= 17 THEN 'trialing' ELSE 'canceled' END
        AS subscription_status,
    CASE WHEN i <= 14 THEN ['starter', 'growth', 'enterprise'][i % 3 + 1] END AS plan_tier,
    'contact.' || i || '@company' || i || '.com' AS primary_contact_email,
    CASE WHEN i <= 14 OR i > 17 THEN 'cus_stripe_' || i END AS stripe_customer_id,
    (1000 + i)::BIGINT AS zendesk_organization_id,
    'ws_' || i AS workspace_id,
    ['usd', 'eur', 'gbp'][i % 3 + 1] AS currency,
    CASE WHEN i <= 14 THEN 100.0 * i ELSE 0.0 END AS mrr,
    CASE WHEN i <= 14 THEN 1200.0 * i ELSE 0.0 END AS arr,
    CASE WHEN i <= 14 THEN 1200.0 * i ELSE 0.0 END AS gross_arr,
    CASE WHEN i <= 14 THEN 1200.0 * i * 1.02 END AS crm_arr,
    CASE WHEN i <= 14 OR i > 17 THEN TIMESTAMP '2024-01-01' + INTERVAL (i) DAY END
        AS first_subscription_at,
    (i % 3)::BIGINT AS open_tickets,
    (i % 5)::BIGINT AS tickets_last_30d,
    CASE WHEN i % 2 = 0 THEN 0.8 END AS csat_score,
    (i * 3)::BIGINT AS active_users_30d,
    TIMESTAMP '2025-06-14 12:00:00' AS last_seen_at,
    TIMESTAMP '2023-06-01' + INTERVAL (i) DAY AS created_at,
    TIMESTAMP '2025-06-14 21:00:00' - INTERVAL (i) HOUR AS source_updated_at
FROM range(1, 21) AS t(i);

CREATE TABLE marts.mrr_by_customer_month AS
SELECT
    c.customer_id,
    m.month,
    c.currency,
    c.mrr * 0.9 AS mrr_local,
    c.mrr,
    c.arr,
    1::BIGINT AS subscription_count
FROM marts.customers AS c
CROSS JOIN (
    SELECT unnest([DATE '2025-04-01', DATE '2025-05-01', DATE '2025-06-01']) AS month
) AS m
WHERE c.subscription_status = 'active';
"""
N_REVENUE_ROWS = 14 * 3

# Injected defects and what each must do to exactly one check.
DEFECTS_SQL = """
INSERT INTO marts.customers SELECT * FROM marts.customers WHERE customer_id = 'cus_005';
UPDATE marts.customers SET primary_contact_email = 'not-an-email' WHERE customer_id = 'cus_002';
UPDATE marts.customers SET primary_contact_email = 'jane.doe@example' WHERE customer_id = 'cus_003';
UPDATE marts.mrr_by_customer_month SET mrr = -mrr, arr = -arr
WHERE month = DATE '2025-06-01' AND customer_id IN ('cus_001', 'cus_002', 'cus_003');
"""


def make_warehouse(path: Path, *extra_sql: str) -> Path:
    with duckdb.connect(str(path)) as con:
        for sql in (MARTS_SQL, *extra_sql):
            con.execute(sql)
    return path


def rows(warehouse: Path, run_id: str) -> list[dict]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cur = con.execute(f"SELECT * FROM {RESULTS_TABLE} WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def find(results: list[dict], entity: str, expectation: str, column: str) -> dict:
    [row] = [
        r for r in results
        if (r["entity"], r["expectation"], r["column_name"]) == (entity, expectation, column)
    ]
    return row


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clean")
    warehouse = make_warehouse(root / "warehouse.duckdb")
    results = validate_all(warehouse, "clean-run", as_of=AS_OF)
    scorecard = build_scorecard(warehouse, root / "reports")
    return {"warehouse": warehouse, "root": root, "results": results, "scorecard": scorecard}


@pytest.fixture(scope="module")
def defects(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("defects")
    warehouse = make_warehouse(root / "warehouse.duckdb", DEFECTS_SQL)
    validate_all(warehouse, "defects-run", as_of=AS_OF)
    scorecard = build_scorecard(warehouse, root / "reports", run_id="defects-run")
    return {"warehouse": warehouse, "rows": rows(warehouse, "defects-run"), "scorecard": scorecard}


def test_suites_are_well_formed():
    covered = {c.dimension for s in SUITES.values() for c in s.checks}
    assert covered == set(DIMENSIONS)
    for suite in SUITES.values():
        assert {c.dimension for c in suite.checks} == set(DIMENSIONS), suite.entity
        assert all(c.owner and c.description for c in suite.checks)


def test_every_check_is_recorded(clean):
    recorded = rows(clean["warehouse"], "clean-run")
    assert len(clean["results"]) == len(recorded)
    for entity, suite in SUITES.items():
        mine = [r for r in recorded if r["entity"] == entity]
        assert sorted((r["expectation"], r["column_name"] or "") for r in mine) == sorted(
            (c.expectation, c.column or "") for c in suite.checks
        )
        assert {r["table_name"] for r in mine} == {suite.table}
    assert {r["dimension"] for r in recorded} == set(DIMENSIONS)
    assert {r["as_of"] for r in recorded} == {datetime(2025, 6, 15)}
    assert all(r["error"] is None for r in recorded)


def test_clean_data_passes_and_scores_100(clean):
    failed = [(r.entity, r.expectation, r.column_name) for r in clean["results"] if not r.success]
    assert failed == []
    sc = clean["scorecard"]
    assert set(sc["entities"]) == set(SUITES)
    for card in sc["entities"].values():
        assert set(card["dimensions"]) == set(DIMENSIONS)
        assert all(d["score"] == 100.0 and d["band"] == "green" for d in card["dimensions"].values())
        assert card["overall"] == {"score": 100.0, "band": "green"}
        assert card["failing_checks"] == []
    assert sc["overall"] == {"score": 100.0, "band": "green"}


def test_aggregate_checks_count_one_element(clean):
    fresh = find(rows(clean["warehouse"], "clean-run"),
                 "customer", "expect_column_min_to_be_between", "source_age_hours")
    assert (fresh["element_count"], fresh["unexpected_count"]) == (1, 0)
    # The freshest update is 2025-06-14 20:00, four hours before the as-of midnight.
    assert json.loads(fresh["observed_value"]) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("entity", "expectation", "column", "unexpected", "evaluated"),
    [
        # Both copies of the duplicated customer are unexpected.
        ("customer", "expect_column_values_to_be_unique", "customer_id", 2, N_CUSTOMERS + 1),
        ("customer", "expect_column_values_to_be_unique", "domain", 2, N_CUSTOMERS + 1),
        ("customer", "expect_column_values_to_match_regex", "primary_contact_email", 2,
         N_CUSTOMERS + 1),
        ("revenue", "expect_column_values_to_be_between", "mrr", 3, N_REVENUE_ROWS),
    ],
)
def test_injected_defects_are_counted_exactly(defects, entity, expectation, column, unexpected,
                                              evaluated):
    row = find(defects["rows"], entity, expectation, column)
    assert row["success"] is False
    assert (row["unexpected_count"], row["element_count"]) == (unexpected, evaluated)
    assert row["unexpected_percent"] == pytest.approx(100 * unexpected / evaluated)


def test_defects_only_break_their_own_checks(defects):
    failed = {(r["entity"], r["expectation"], r["column_name"])
              for r in defects["rows"] if not r["success"]}
    assert failed == {
        ("customer", "expect_column_values_to_be_unique", "customer_id"),
        ("customer", "expect_column_values_to_be_unique", "domain"),
        ("customer", "expect_column_values_to_be_unique", "stripe_customer_id"),
        ("customer", "expect_column_values_to_match_regex", "primary_contact_email"),
        ("revenue", "expect_column_values_to_be_between", "mrr"),
    }


def test_samples_are_masked(defects):
    email = find(defects["rows"], "customer", "expect_column_values_to_match_regex",
                 "primary_contact_email")
    assert sorted(json.loads(email["sample_unexpected"])) == ["j***@example", "n***"]
    dup = find(defects["rows"], "customer", "expect_column_values_to_be_unique", "customer_id")
    assert json.loads(dup["sample_unexpected"]) == ["cus_005"]
    assert mask_email("jane.doe@example.com") == "j***@example.com"


def test_dimension_scores_drop(defects):
    customer = defects["scorecard"]["entities"]["customer"]
    revenue = defects["scorecard"]["entities"]["revenue"]
    uniqueness = customer["dimensions"]["uniqueness"]
    # The duplicate hits all three checks: 2 of 21 ids, 2 of 21 domains, and 2 of the 18
    # non-null billing ids (trial customers have none).
    expected = round((2 * 100 * (1 - 2 / 21) + 100 * (1 - 2 / 18)) / 3, 1)
    assert uniqueness["score"] == pytest.approx(expected) == pytest.approx(89.9)
    assert (uniqueness["band"], uniqueness["failed"], uniqueness["checks"]) == ("red", 3, 3)
    assert customer["dimensions"]["validity"]["score"] < 100
    assert customer["dimensions"]["completeness"]["score"] == 100
    assert revenue["dimensions"]["validity"]["score"] < 100
    assert customer["overall"]["score"] < 100 and revenue["overall"]["score"] < 100
    blocking_first = [c["severity"] for c in customer["failing_checks"]]
    assert blocking_first == sorted(blocking_first)  # "blocking" < "warning"
    assert {c["column"] for c in customer["failing_checks"]} == {
        "customer_id", "domain", "stripe_customer_id", "primary_contact_email"}


def test_stale_data_fails_timeliness(clean, tmp_path):
    warehouse = make_warehouse(tmp_path / "stale.duckdb")
    results = validate_entity(warehouse, "revenue", "stale-run", as_of=datetime(2025, 8, 3))
    assert {r.entity for r in results} == {"revenue"}
    [timely] = [r for r in results if r.dimension == "timeliness"]
    assert (timely.success, timely.element_count, timely.unexpected_count) == (False, 1, 1)
    assert json.loads(timely.observed_value) == 2  # June is two months behind August


def test_rerun_replaces_rows_of_the_same_run(clean, tmp_path):
    warehouse = make_warehouse(tmp_path / "rerun.duckdb")
    validate_entity(warehouse, "customer", "run-1", as_of=AS_OF)
    validate_entity(warehouse, "customer", "run-1", as_of=AS_OF)
    assert len(rows(warehouse, "run-1")) == len(SUITES["customer"].checks)
    # The runner holds no connection afterwards: a writer can open the file at once.
    duckdb.connect(str(warehouse)).close()


def test_scorecard_files_and_layout(clean):
    reports = clean["root"] / "reports"
    on_disk = json.loads((reports / "scorecard.json").read_text())
    assert on_disk == clean["scorecard"]
    assert set(on_disk) == {"generated_at", "run_id", "as_of", "bands", "entities", "overall"}
    assert on_disk["run_id"] == "clean-run"  # the latest run by default
    assert on_disk["as_of"] == "2025-06-15T00:00:00"
    assert on_disk["bands"]["green"]["min"] == 95 and on_disk["bands"]["red"]["max"] == 90
    for card in on_disk["entities"].values():
        assert set(card) == {"overall", "dimensions", "failing_checks"}
        for dim in card["dimensions"].values():
            assert set(dim) == {"score", "band", "checks", "failed"}

    html = (reports / "scorecard.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert "http://" not in html and "https://" not in html
    assert "customer" in html and "Every check passed." in html


def test_html_lists_failing_checks(defects, tmp_path):
    from expectations.scorecard import render_html

    html = render_html(defects["scorecard"])
    assert 'class="red" title="3 checks, 3 failed"' in html
    assert "expect_column_values_to_match_regex" in html and "n***" in html
    assert "not-an-email" not in html and "jane.doe" not in html


@pytest.mark.parametrize(
    ("score", "expected"),
    [(100, "green"), (95, "green"), (94.99, "yellow"), (92, "yellow"), (90, "yellow"),
     (89.99, "red"), (0, "red")],
)
def test_bands(score, expected):
    assert band(score) == expected


def test_scores_are_banded_in_the_json():
    from expectations.scorecard import score_results

    def row(dimension, unexpected, elements=100, success=None):
        return {
            "entity": "customer", "dimension": dimension, "as_of": datetime(2025, 6, 15),
            "expectation": "expect_x", "column_name": "c", "severity": "warning",
            "description": "d", "owner": "o", "element_count": elements,
            "unexpected_count": unexpected, "sample_unexpected": "[]", "observed_value": None,
            "error": None, "success": unexpected == 0 if success is None else success,
        }

    card = score_results(
        [row("validity", 8), row("completeness", 0), row("completeness", 0, elements=0),
         row("accuracy", 0, elements=0, success=False)],
        "r",
    )["entities"]["customer"]
    assert card["dimensions"]["validity"] == {"score": 92.0, "band": "yellow", "checks": 1,
                                              "failed": 1}
    assert card["dimensions"]["completeness"]["score"] == 100.0  # empty + passed counts as 100
    assert card["dimensions"]["accuracy"]["score"] == 0.0  # could not run: counts as 0
    assert card["overall"] == {"score": round((92 + 100 + 0) / 3, 1), "band": "red"}


def test_format_summary(defects):
    text = format_summary(defects["scorecard"])
    lines = text.splitlines()
    assert lines[1].split() == ["entity", *DIMENSIONS, "overall"]
    customer = next(line for line in lines if line.startswith("customer"))
    assert "89.9 R" in customer
    assert "customer: 4 failing (1 blocking)" in text
