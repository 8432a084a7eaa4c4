"""Hostile values are counted and harmless.

One `spine run` at `tiny` whose vendor records carry markup in their free-text fields (names,
emails' domains, job titles, ticket subjects and descriptions, company, organization, user and
deal names), a NUL byte and control characters in some, and a 1 MB company name: every entity
is still published, the plain-text validity checks count exactly the values planted, the
Markdown digest holds no raw tag, and the HTML scorecard, rendered in a real browser, runs
nothing injected and shows the values as text. Unit tests: the digest and Slack payloads escape
what they quote, and the local Stripe API serves records whose `created` is not a number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pytest
from browser_pages import rendered
from pipeline_runs import prepare, spine_run

from expectations.runner import RESULTS_TABLE

PWNED = "document.title='pwned'"
SCRIPT = f"<script>{PWNED}</script>"
IMG = f"""<img id=injected src=x onerror="{PWNED}">"""
MEGABYTE_NAME = "Mega " + "m" * (1 << 20)
# Serving must still hold what the sources sent, NUL bytes included (the checks count, never change).
NUL_NAME = "Ja\x00ne"


def _read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_text().split("\n") if line.strip()]


def _write(path: Path, records: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


@dataclass
class Planted:
    """What was planted, by the check that must count it."""

    company_names: int
    contact_names: int
    contact_emails: int
    job_titles: int
    subjects: int
    primary_contacts: int


def plant(sources: Path) -> Planted:
    """Markup, control characters and over-long values in a few records of every source."""
    companies = _read(sources / "hubspot" / "companies.jsonl")
    for company, name in zip(companies[1:4], (f"Acme {SCRIPT}", MEGABYTE_NAME, f"Evil {IMG} Inc")):
        company["properties"]["name"] = name
    _write(sources / "hubspot" / "companies.jsonl", companies)

    contacts = _read(sources / "hubspot" / "contacts.jsonl")
    by_company: dict[str, list[dict]] = {}
    for c in sorted(contacts, key=lambda c: (c["properties"]["createdate"], c["id"])):
        by_company.setdefault(c["properties"]["associatedcompanyid"], []).append(c)
    firsts = [cs[0] for company, cs in by_company.items() if company]  # each company's primary contact
    # A customer's primary contact is its earliest: these two count for the customer too.
    firsts[0]["properties"].update(firstname="<b id=injected>Bold</b>", email=f'x@">{IMG}.evil')
    firsts[1]["properties"].update(firstname=NUL_NAME, email="jane\x07doe@example.com")
    later = next(cs[1] for company, cs in by_company.items() if company and len(cs) > 1)
    later["properties"]["jobtitle"] = f"CTO {SCRIPT}"
    _write(sources / "hubspot" / "contacts.jsonl", contacts)

    customers = _read(sources / "stripe" / "customers.jsonl")
    customers[4].update(name="<svg onload=alert(1)>", email=f"billing@{SCRIPT}.evil")
    customers[5]["name"] = "Acme\r\nBcc: everyone\x1b[31m"
    _write(sources / "stripe" / "customers.jsonl", customers)

    tickets = _read(sources / "zendesk" / "tickets.jsonl")
    tickets[0].update(subject=f"Broken {IMG}", description=f"See {SCRIPT} <a href=javascript:alert(1)>here</a>")
    tickets[1]["subject"] = "Help\x00me\x1b[2J"
    tickets[2]["subject"] = "Long " + "x" * 1500
    _write(sources / "zendesk" / "tickets.jsonl", tickets)

    # Fields no published column carries: harmless wherever they go.
    for path, field in (
        (sources / "zendesk" / "organizations.jsonl", "name"),
        (sources / "zendesk" / "users.jsonl", "name"),
    ):
        records = _read(path)
        records[6][field] = f"{records[6][field]} {IMG}"
        _write(path, records)
    deals = _read(sources / "hubspot" / "deals.jsonl")
    deals[0]["properties"]["dealname"] += f" {SCRIPT}"
    _write(sources / "hubspot" / "deals.jsonl", deals)
    return Planted(company_names=3, contact_names=4, contact_emails=3, job_titles=1, subjects=3, primary_contacts=2)


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@dataclass
class HostileRun:
    root: Path
    returncode: int
    output: str
    planted: Planted

    @property
    def warehouse(self) -> Path:
        return self.root / "data" / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "data" / "reports"

    def results(self) -> dict[tuple[str, str], dict]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            cursor = con.execute(f"select * from {RESULTS_TABLE}")
            names = [d[0] for d in cursor.description]
            return {(r["entity"], r["check_name"]): r for r in (dict(zip(names, row)) for row in cursor.fetchall())}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> HostileRun:
    root = tmp_path_factory.mktemp("hostile")
    prepare(root)
    planted = plant(root / "data" / "sources")
    log = root / "spine_run.log"
    returncode = spine_run(root, log).wait(timeout=900)
    return HostileRun(root, returncode, log.read_text(errors="replace"), planted)


def test_hostile_values_are_published_and_counted_as_validity_warnings(hostile):
    assert hostile.returncode == 0, hostile.output[-5000:]
    with duckdb.connect(str(hostile.warehouse), read_only=True) as con:
        decisions = dict(
            con.execute(
                "select entity, arg_max(status, decided_at) from quality.publications group by entity"
            ).fetchall()
        )
        # Serving holds the values as the sources sent them: the checks count, they change nothing.
        served = con.execute("select count(*) from serving.customers where length(company_name) > 1000000").fetchone()
        nul = con.execute("select count(*) from serving.contacts where full_name like '%' || chr(0) || '%'").fetchone()
    assert set(decisions.values()) == {"published"} and len(decisions) == 6, decisions
    assert served == (1,) and nul == (1,)

    planted = hostile.planted
    expected = {
        ("customer", "company_name_plain_text"): planted.company_names,
        ("customer", "primary_contact_name_plain_text"): planted.primary_contacts,
        ("customer", "primary_contact_email_plain_text"): planted.primary_contacts,
        ("customer", "domain_plain_text"): 0,
        ("contact", "contact_name_plain_text"): planted.contact_names,
        ("contact", "contact_email_plain_text"): planted.contact_emails,
        ("contact", "contact_job_title_plain_text"): planted.job_titles,
        ("ticket", "ticket_subject_plain_text"): planted.subjects,
        ("usage_event", "event_name_plain_text"): 0,
    }
    results = hostile.results()
    assert {key: results[key]["unexpected_count"] for key in expected} == expected
    for key, count in expected.items():
        row = results[key]
        assert (row["dimension"], row["severity"], row["success"]) == ("validity", "warning", count == 0), key
    assert [k for k, r in results.items() if r["severity"] == "blocking" and not r["success"]] == []

    # Samples name the record and what was found, never the value.
    reasons = {
        s["full_name_problems"]
        for s in json.loads(results[("contact", "contact_name_plain_text")]["sample_unexpected"])
    }
    assert reasons == {"markup", "control characters"}
    company = json.loads(results[("customer", "company_name_plain_text")]["sample_unexpected"])
    assert {s["company_name_problems"] for s in company} == {"markup", "over 256 characters"}
    assert all(set(s) == {"customer_id", "company_name_problems"} for s in company)
    # Every stored sample stays small, and holds no raw control character.
    largest = max(len(r["sample_unexpected"]) for r in results.values())
    assert largest < 5000
    assert not [
        s
        for r in results.values()
        for s in _strings(json.loads(r["sample_unexpected"]))
        if re.search(r"[\x00-\x1f]", s)
    ]

    card = json.loads((hostile.reports / "scorecard.json").read_text())
    for (entity, name), count in expected.items():
        failing = {c["check"]: c for c in card["entities"][entity]["failing_checks"]}
        if count:
            found = failing[name]
            assert (found["dimension"], found["unexpected_count"]) == ("validity", count), name
            assert found["score"] == round(100 * (1 - count / found["element_count"]), 1) < 100
            assert card["entities"][entity]["dimensions"]["validity"]["failed"] >= 1
        else:
            assert name not in failing


def test_markdown_digest_holds_no_raw_markup(hostile):
    digest = (hostile.reports / "scorecard.md").read_text()
    assert not re.search(r"<(img|script|svg|b)\b", digest, re.IGNORECASE), digest
    assert "&lt;img id=injected" in digest or "&lt;script&gt;" in digest
    assert "\x00" not in digest and "\x1b" not in digest


def test_html_scorecard_runs_nothing_injected_and_shows_the_text(hostile, tmp_path):
    html = hostile.reports / "scorecard.html"
    assert len(html.read_bytes()) < 2_000_000, "no megabyte value in the page"
    probe = """JSON.stringify({
      injected: document.querySelectorAll('#injected, img, script, iframe, [onerror], [onload]').length,
      text: document.body.innerText,
    })"""
    page = rendered(html, tmp_path / "scorecard.png", probe)
    assert page["title"].startswith("Data quality scorecard"), page["title"]
    assert page["probe"]["injected"] == 0
    text = page["probe"]["text"]
    # The masked emails keep their domains, markup and all, as literal text.
    assert f'x***@">{IMG}.evil' in text
    assert f"b***@{SCRIPT}.evil" in text


# --- units ----------------------------------------------------------------------------------


def test_digest_keeps_each_value_on_its_line_and_in_its_cell():
    from datetime import datetime

    from quality.scorecard import render_markdown, score_results

    day = datetime(2026, 11, 21)
    row = {
        "entity": "contact",
        "run_id": "r`1",
        "validated_at": day,
        "as_of": day,
        "dimension": "validity",
        "success": False,
        "element_count": 4,
        "unexpected_count": 1,
        "severity": "warning",
        "check_name": "crm_contact_email_valid",
        "table_name": "contacts",
        "expectation": "expect_column_values_to_match_regex",
        "column_name": "email",
        "description": "Emails are well-formed",
        "owner": "Sales & CS",
        "observed_value": None,
        "error": None,
        "sample_unexpected": json.dumps(
            [{"contact_key": "hubspot:1\n# Heading | cell", "email": "a***@[x](javascript:alert(1)) *b* _c_ `d` <i>"}]
        ),
    }
    digest = render_markdown(score_results([row]))
    line = next(line for line in digest.splitlines() if "crm_contact_email_valid" in line)
    assert "hubspot:1 # Heading \\| cell" in line  # the line break is a space: no heading starts
    assert "\\[x\\](javascript:alert(1)) \\*b\\* \\_c\\_ \\`d\\` &lt;i&gt;" in line
    assert "Sales &amp; CS" in line
    assert "latest audit run `r'1`" in digest


def test_slack_payload_escapes_what_it_quotes():
    from quality.alert_conditions import Alert
    from quality.alert_delivery import Slack

    alert = Alert(
        id="1",
        key="k",
        status="firing",
        kind="blocking_check",
        severity="critical",
        state="fail",
        dataset="contact <!channel>",
        what="check <https://evil|click> & more",
        how_many="1 of 2",
        since=None,
        likely_causes=["<@U123>"],
        owner="Sales & CS",
        suggested_action="fix <b>",
        details={},
        sent_at="2026-11-21T06:00:00Z",
    )
    payload = Slack("http://127.0.0.1:9").payload(alert)
    text = payload["text"] + payload["attachments"][0]["text"]
    assert "<" not in text.replace(":rotating_light:", "") and ">" not in text
    assert "&lt;!channel&gt;" in payload["text"] and "&amp; more" in payload["text"]
    assert "Sales &amp; CS" in payload["attachments"][0]["text"]


def test_local_stripe_api_serves_records_whose_created_is_not_a_number(tmp_path):
    from sample_company.vendor_api.store import RecordStore
    from sample_company.vendor_api.stripe import handle

    created = {
        "cus_a": 1_700_000_300,
        "cus_b": "2024-01-01T00:00:00Z",
        "cus_c": None,
        "cus_d": 1_700_000_100,
        "cus_e": True,
    }
    records = [{"id": i, "object": "customer", **({} if c is None else {"created": c})} for i, c in created.items()]
    (tmp_path / "stripe").mkdir()
    _write(tmp_path / "stripe" / "customers.jsonl", records)
    store = RecordStore(tmp_path)

    seen, after = [], None
    while True:
        status, body = handle(store, "/v1/customers", {"limit": "2", **({"starting_after": after} if after else {})})
        assert status == 200, body
        page = [r["id"] for r in orjson.loads(orjson.dumps(body))["data"]]
        seen += page
        if not body["has_more"]:
            break
        after = page[-1]
    # Newest first; a `created` that is not a number sorts as 0 (oldest), by id.
    assert seen == ["cus_a", "cus_d", "cus_b", "cus_c", "cus_e"]

    status, body = handle(store, "/v1/customers", {"created[gte]": "1700000000"})
    assert status == 200 and [r["id"] for r in orjson.loads(orjson.dumps(body))["data"]] == ["cus_a", "cus_d"]
    status, body = handle(store, "/v1/customers", {"created[lt]": "1"})
    assert status == 200 and {r["id"] for r in orjson.loads(orjson.dumps(body))["data"]} == {"cus_b", "cus_c", "cus_e"}
