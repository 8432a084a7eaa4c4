"""The suites against the sample company's ground truth, end to end.

With its default defects, every defect class the generator recorded is found by a check whose
unexpected count is exactly the manifest's count, and its sample names records the manifest
lists; nothing blocks publication. The company without defects (`clean_tiny`: the `tiny` preset,
run with the installed `spine` command) passes every check and scores 100 everywhere. The
scorecard validates against its schema and renders in a real headless browser, and links the
Great Expectations Data Docs, which show every expectation of every suite's latest run.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, unquote

import duckdb
import pytest
from browser_pages import rendered

from data_spine.settings import settings
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
    page = rendered(reports / "scorecard.html", shot)
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


# An address as the sample company writes one; a masked one (`j***@...`) never matches.
EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# The observed-value cell of each expectation GX renders on a validation page (its third
# column; the tables nested in a failing expectation's cell have longer ids).
OBSERVED_CELL = re.compile(
    r'<td id="section-\d+-content-block-\d+-cell-\d+-3" ><div class="show-scrollbars">(.*?)</div></td>', re.S
)


def test_gx_data_docs_show_every_expectation_of_the_latest_run_of_every_suite(first_run, audited):
    from expectations.gx_data_docs import page_file, site_dir

    reports = settings().reports_dir
    index = (site_dir(reports) / "index.html").read_text()
    offline = index.split('id="spine-run-list"', 1)[1]
    for entity, suite in SUITES.items():
        mine = [r for (e, _), r in audited.items() if e == entity]
        assert {r["check_name"] for r in mine} == {c.name for c in suite.checks}
        for batch in suite.batches:
            rows = [r for r in mine if r["table_name"] == batch.name]
            page = page_file(reports, entity, first_run.run_id, rows[0]["validated_at"], batch.name)
            assert str(page.relative_to(site_dir(reports))) in index, "the index lists the run's page"
            # ... also in the plain list a browser shows offline, without GX's scripts from CDNs.
            assert f'href="{quote(str(page.relative_to(site_dir(reports))))}"' in offline, batch.name
            text = page.read_text()
            observed = [html.unescape(re.sub(r"<[^>]+>", " ", cell)).strip() for cell in OBSERVED_CELL.findall(text)]
            assert len(observed) == len(rows) == len(batch.checks), (entity, batch.name)
            assert all(observed), f"{entity}/{batch.name}: an expectation without its observed value"
            assert all(html.escape(r["description"]) in text for r in rows), (entity, batch.name)
            for r in rows:
                if r["observed_value"] is not None and r["error"] is None:
                    assert str(json.loads(r["observed_value"])) in observed, r["check_name"]


def test_scorecard_links_to_the_data_docs_pages_of_its_audits(first_run):
    reports = settings().reports_dir
    card = json.loads((reports / "scorecard.json").read_text())
    links = [card["data_docs_index"]]
    for entity, body in card["entities"].items():
        assert [p["table"] for p in body["data_docs"]] == [b.name for b in SUITES[entity].batches]
        links += [p["url"] for p in body["data_docs"]]
        for failing in body["failing_checks"]:
            assert failing["data_docs_url"] in [p["url"] for p in body["data_docs"] if p["table"] == failing["table"]]
    assert all((reports / unquote(link)).is_file() for link in links)
    page = (reports / "scorecard.html").read_text()
    assert all(f'href="{link}"' in page for link in links)


def test_gx_data_docs_show_no_unmasked_email(first_run):
    from expectations.gx_data_docs import STORE, site_dir

    reports = settings().reports_dir
    sources = {m for path in settings().sources_dir.rglob("*.jsonl") for m in EMAIL.findall(path.read_text())}
    assert len(sources) > 1000
    written = [p for folder in (site_dir(reports), reports / STORE) for p in folder.rglob("*") if p.is_file()]
    shown = {m for p in written if p.suffix in (".html", ".json") for m in EMAIL.findall(p.read_text())}
    assert shown & sources == set()
    assert any("***@" in p.read_text() for p in written if p.suffix == ".html"), "masked samples are shown"


def test_no_report_shows_a_contacts_full_name(first_run):
    """Names are masked wherever samples or rows are shown, as emails are: in the Data Docs,
    the scorecard and the revenue report (every file the run writes under reports)."""
    contacts = settings().sources_dir / "hubspot" / "contacts.jsonl"
    names = set()
    for line in contacts.read_text().splitlines():
        properties = json.loads(line)["properties"]
        if properties.get("firstname") and properties.get("lastname"):
            names.add(f"{properties['firstname']} {properties['lastname']}")
    assert len(names) > 1000
    written = [p for p in settings().reports_dir.rglob("*") if p.is_file() and p.suffix in (".html", ".json", ".md")]
    assert len(written) > 20
    # Every pair of capitalised words in a file (overlapping, so "Dear Jane Doe" yields "Jane
    # Doe"), looked up among the names: one pass per file rather than one per name.
    pairs = re.compile(r"(?=\b([A-Z][\w'.-]*\s+[A-Z][\w'.-]*)\b)")
    assert not [n for n in names if n not in pairs.findall(f"<td>{n}</td>")], "the search must see every name"
    shown = {p.name: sorted({" ".join(m.split()) for m in pairs.findall(p.read_text())} & names) for p in written}
    assert {name: found for name, found in shown.items() if found} == {}
