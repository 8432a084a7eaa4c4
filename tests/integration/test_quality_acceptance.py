"""The suites against the sample company's ground truth, end to end.

With its default defects, every defect class the generator recorded is found by a check whose
unexpected count is exactly the manifest's count, and its sample names records the manifest
lists; nothing blocks publication. The company without defects (`clean_tiny`: the `tiny` preset,
run with the installed `spine` command) passes every check and scores 100 everywhere. The
scorecard validates against its schema and renders in a real headless browser.
"""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from data_spine.settings import PROJECT_ROOT, settings
from expectations import DIMENSIONS, SUITES
from expectations.runner import RESULTS_TABLE
from sample_company.defects import CHECKS_TRIPPED

DEFECT_CHECKS = CHECKS_TRIPPED
# A stopped feed is counted in days without deliveries.
STALE_FEED_CHECK = ("usage_event", "events_received_every_day")


def _results(warehouse, run_id: str | None = None) -> dict[tuple[str, str], dict]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        run_id = run_id or con.execute(f"select arg_max(run_id, validated_at) from {RESULTS_TABLE}").fetchone()[0]
        cursor = con.execute(f"select * from {RESULTS_TABLE} where run_id = ?", [run_id])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    return {(r["entity"], r["check_name"]): r for r in rows}


@pytest.fixture(scope="module")
def audited(first_run):
    return _results(settings().warehouse, first_run.run_id)


def test_every_defect_class_is_counted_exactly_by_a_check(audited, small_company):
    records = small_company["defects"]["records"]
    recorded = {(entity, defect) for entity, defects in records.items() for defect in defects}
    assert recorded == set(DEFECT_CHECKS), "every defect class the generator injects has its check"
    counted = {}
    for (entity, defect), key in DEFECT_CHECKS.items():
        counted[f"{entity}.{defect}"] = (audited[key]["unexpected_count"], len(records[entity][defect]))
    assert {k: found for k, (found, _) in counted.items()} == {k: truth for k, (_, truth) in counted.items()}

    stale = small_company["defects"]["stale_feeds"]["usage.events"]["days"]
    assert audited[STALE_FEED_CHECK]["unexpected_count"] == stale


def _sample_ids(row: dict) -> set[str]:
    ids = set()
    for record in json.loads(row["sample_unexpected"]):
        for field in ("contact_key", "company_id", "event_id", "ticket_id", "source_key", "customer_id"):
            if field in record:
                ids.add(str(record[field]).split(":", 1)[-1])
    return ids


@pytest.mark.parametrize(
    ("entity", "defect"),
    [
        ("hubspot.companies", "missing_required_field"),
        ("hubspot.companies", "duplicate_company"),
        ("hubspot.contacts", "invalid_email"),
        ("stripe.customers", "missing_email"),
        ("usage.events", "malformed_event_name"),
        ("usage.events", "late_event"),
        ("zendesk.tickets", "orphan_ticket"),
        ("zendesk.tickets", "missing_required_field"),
    ],
)
def test_sampled_records_are_the_injected_ones(audited, small_company, entity, defect):
    row = audited[DEFECT_CHECKS[(entity, defect)]]
    sampled = _sample_ids(row)
    assert sampled and sampled <= {str(i) for i in small_company["defects"]["records"][entity][defect]}


def test_sampled_personal_data_is_masked(audited):
    for key in (("contact", "crm_contact_email_valid"), ("contact", "billing_email_valid")):
        emails = [r["email"] for r in json.loads(audited[key]["sample_unexpected"])]
        assert emails and all("***" in e for e in emails), emails


def test_default_defects_block_nothing_and_every_entity_is_published(audited, first_run):
    assert [k for k, r in audited.items() if r["severity"] == "blocking" and not r["success"]] == []
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        decisions = dict(
            con.execute(
                "select entity, status from quality.publications where run_id = ?", [first_run.run_id]
            ).fetchall()
        )
        assert decisions == dict.fromkeys(SUITES, "published")
        # Serving holds exactly what the latest publication of each entity copied (later
        # rebuilds of the marts outside a run are not published).
        latest = con.execute(
            "select entity, arg_max(row_counts, decided_at) from quality.publications "
            "where status = 'published' group by entity"
        ).fetchall()
        for _entity, counts in latest:
            for table, rows in json.loads(counts).items():
                assert con.execute(f"select count(*) from serving.{table}").fetchone() == (rows,), table


def test_scorecard_json_follows_its_documented_schema(first_run):
    import jsonschema

    from quality.scorecard import SCHEMA

    card = json.loads((settings().reports_dir / "scorecard.json").read_text())
    jsonschema.validate(card, json.loads(SCHEMA.read_text()))
    assert list(card["entities"]) == list(SUITES)
    assert {e["publication"]["status"] for e in card["entities"].values()} == {"published"}
    # The stopped usage feed is the alert of the default company.
    assert "data_freshness:source:usage_events" in {a["key"] for a in card["alerts"]}


def test_scorecard_renders_in_a_real_headless_browser(first_run, tmp_path):
    reports = settings().reports_dir
    card = json.loads((reports / "scorecard.json").read_text())
    shot = tmp_path / "scorecard.png"
    run = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "tests" / "headless_browser.py"),
            str(reports / "scorecard.html"),
            str(shot),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    page = json.loads(run.stdout.splitlines()[-1])
    assert page["title"].startswith("Data quality scorecard")
    assert page["entity_rows"] == list(card["entities"])
    assert page["overall"] == f"{card['overall']['score']:.1f}"
    assert page["alerts"] == len(card["alerts"])
    assert page["failing_rows"] == sum(len(e["failing_checks"]) for e in card["entities"].values())
    assert page["chart"]["width"] > 600 and page["chart"]["height"] > 200 and page["chart"]["lines"] > len(SUITES)
    assert page["text_width"] > 0, "text rendered (a font was found)"
    assert page["screenshot"]["width"] == 1280 and shot.stat().st_size > 50_000
    # The band colours are painted: green cells everywhere, red for the stale usage feed.
    assert page["band_pixels"]["green"] > 1000 and page["band_pixels"]["red"] > 100


def test_clean_company_passes_every_check_and_scores_100(clean_tiny):
    data, output = clean_tiny.root / "data", clean_tiny.output
    results = _results(clean_tiny.warehouse)
    assert len(results) == sum(len(s.checks) for s in SUITES.values())
    assert [k for k, r in results.items() if not r["success"] or r["unexpected_count"]] == []
    card = json.loads((data / "reports" / "scorecard.json").read_text())
    for entity, body in card["entities"].items():
        assert body["overall"] == {"score": 100.0, "band": "green"}, entity
        assert set(body["dimensions"]) == set(SUITES[entity].dimensions)
        assert all(d["score"] == 100.0 for d in body["dimensions"].values()), entity
        assert body["publication"]["status"] == "published"
    assert card["overall"]["score"] == 100.0 and card["alerts"] == []
    assert set().union(*(b["dimensions"] for b in card["entities"].values())) == set(DIMENSIONS)
    assert not (data / "alerts" / "alerts.jsonl").exists(), "a clean company raises no alert"
    assert "Alerts: 0 raised this run" in output
