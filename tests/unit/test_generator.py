"""The sample company is deterministic, behaves like a real SaaS business, and its manifest
tells the truth about its files, including every defect injected into them.

The defect tests find each defect class again from the written files alone, with rules a
data engineer would write, and compare the ids with the manifest's ground truth.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from expectations.suites.common import EMAIL_REGEX
from sample_company.defects import DefectRates
from sample_company.generate import generate

AS_OF = date(2026, 11, 21)
AS_OF_INSTANT = datetime(2026, 11, 21, tzinfo=UTC)
EVENT_NAME = re.compile(r"[a-z_]+\.[a-z_]+\.[a-z_]+")
USD_RATE = {"usd": 1.0, "eur": 1.08, "gbp": 1.27}  # dbt_project/seeds/exchange_rates.csv
PAYING = ("active", "past_due", "unpaid")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _quiet(*_args) -> None:
    pass


def _read(folder: Path, system: str, obj: str) -> list[dict]:
    with (folder / "sources" / system / f"{obj}.jsonl").open() as f:
        return [json.loads(line) for line in f]


def _events(folder: Path) -> list[dict]:
    rows = []
    for path in sorted((folder / "landing").glob("*.jsonl.gz")):
        rows += [json.loads(line) | {"_file": path.name} for line in gzip.decompress(path.read_bytes()).splitlines()]
    return rows


def _instant(value: str | int) -> datetime:
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "sources" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("gen")
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate(base / name / "sources", base / name / "landing", preset="tiny", seed=seed, as_of=AS_OF, log=_quiet)
    return base / "a", base / "b", base / "c"


@pytest.fixture(scope="module")
def companies(tmp_path_factory) -> dict[str, Path]:
    """The `small` company with its default defects, and the same company clean."""
    base = tmp_path_factory.mktemp("small")
    for name, defects in (("defects", None), ("clean", "none")):
        generate(
            base / name / "sources",
            base / name / "landing",
            preset="small",
            seed=42,
            as_of=AS_OF,
            defects=defects,
            log=_quiet,
        )
    return {"defects": base / "defects", "clean": base / "clean"}


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_output(two_runs):
    a, b, _ = two_runs
    digest_a = _digest(a)
    assert len(digest_a) > 10
    assert digest_a == _digest(b)


def test_other_seed_gives_other_company(two_runs):
    a, _, c = two_runs
    assert _digest(a) != _digest(c)


def test_manifest_counts_match_files(two_runs):
    a, _, _ = two_runs
    manifest = _manifest(a)
    for system in ("stripe", "hubspot", "zendesk"):
        for obj, expected in manifest["counts"][system].items():
            lines = (a / "sources" / system / f"{obj}.jsonl").read_text().splitlines()
            assert len(lines) == expected, f"{system}.{obj}"
    files = sorted((a / "landing").glob("*.jsonl.gz"))
    assert len(files) == manifest["counts"]["usage"]["files"]
    events = sum(len(gzip.decompress(f.read_bytes()).splitlines()) for f in files)
    assert events == manifest["counts"]["usage"]["events"]
    # The feed's last days are missing (a stale source), the rest of the 5,000 is there.
    assert 4_900 < events < 5_000


def test_sources_agree_with_each_other(two_runs):
    """Every billing customer and support organization points at a CRM company."""
    a, _, _ = two_runs
    crm_ids = {c["id"] for c in _read(a, "hubspot", "companies")}
    assert {c["metadata"]["hubspot_company_id"] for c in _read(a, "stripe", "customers")} <= crm_ids
    assert {o["external_id"] for o in _read(a, "zendesk", "organizations")} <= crm_ids
    customers = {c["id"] for c in _read(a, "stripe", "customers")}
    assert {s["customer"] for s in _read(a, "stripe", "subscriptions")} <= customers
    assert {i["customer"] for i in _read(a, "stripe", "invoices")} <= customers


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown scale preset 'huge'"):
        generate(tmp_path / "s", tmp_path / "l", preset="huge", log=_quiet)


# --------------------------------------------------------------------------- realism
def test_presets_have_their_documented_size(companies):
    clean = _manifest(companies["clean"])["counts"]
    assert clean["hubspot"]["companies"] == 500
    assert clean["usage"]["events"] == 100_000
    assert 9_000 < clean["zendesk"]["tickets"] < 11_000
    assert {e["event"] for e in _events(companies["clean"])} <= {n for n in _all_event_names()}


def _all_event_names() -> set[str]:
    from sample_company.activity import EVENT_CATALOG

    assert all(EVENT_NAME.fullmatch(n) for n in EVENT_CATALOG)
    return set(EVENT_CATALOG)


def test_billing_has_plans_currencies_coupons_and_plan_changes(companies):
    folder = companies["clean"]
    subs = _read(folder, "stripe", "subscriptions")
    prices = [s["items"]["data"][0]["price"] for s in subs]
    assert {p["recurring"]["interval"] for p in prices} == {"month", "year"}
    assert {p["currency"] for p in prices} == {"usd", "eur", "gbp"}

    # Current API shape: objects name their discounts, a discount its coupon (source.coupon).
    coupon_of = {c["id"]: c for c in _read(folder, "stripe", "coupons")}
    discounts = {d["id"]: coupon_of[d["source"]["coupon"]] for d in _read(folder, "stripe", "discounts")}
    coupons = [discounts[d] for s in subs for d in s["discounts"]]
    assert {c["duration"] for c in coupons} == {"once", "repeating", "forever"}
    assert all((c["percent_off"] is None) != (c["amount_off"] is None) for c in coupon_of.values())
    invoices = _read(folder, "stripe", "invoices")
    discounted = [i for i in invoices if i["discounts"]]
    assert len(discounted) > 50
    for i in invoices:
        coupon = discounts[i["discounts"][0]] if i["discounts"] else {}
        line_discounts = [a for line in i["lines"]["data"] for a in line["discount_amounts"]]
        assert sum(a["amount"] for a in line_discounts) == i["subtotal"] - i["total"]
        assert {a["discount"] for a in line_discounts} <= set(i["discounts"])
        if coupon.get("percent_off"):
            off = round(i["subtotal"] * coupon["percent_off"] / 100)
        else:
            off = min(coupon.get("amount_off") or 0, i["subtotal"])
        assert i["total"] == i["subtotal"] - off == i["amount_due"]

    # Upgrades and downgrades: the invoiced amount changes during a subscription's life, and
    # the item shows the plan now in force (what the latest invoice billed, unless the plan
    # changed again since its period started).
    by_sub = defaultdict(list)
    for i in sorted(invoices, key=lambda i: i["period_start"]):
        by_sub[i["parent"]["subscription_details"]["subscription"]].append(i)
    changed = [s for s, inv in by_sub.items() if len({i["subtotal"] for i in inv}) > 1]
    assert len(changed) > 0.2 * len(by_sub)
    items = {s["id"]: s["items"]["data"][0] for s in subs}
    matches = [
        items[s]["price"]["unit_amount"] * items[s]["quantity"] == inv[-1]["subtotal"] for s, inv in by_sub.items()
    ]
    assert sum(matches) > 0.8 * len(matches)


def test_failed_payments_are_retried_or_left_unpaid(companies):
    folder = companies["clean"]
    invoices = {i["id"]: i for i in _read(folder, "stripe", "invoices")}
    # Since API version 2025-03-31 a charge names no invoice: its invoice's payment names the
    # charge's PaymentIntent.
    invoice_of = {p["payment"]["payment_intent"]: p["invoice"] for p in _read(folder, "stripe", "invoice_payments")}
    charges = defaultdict(list)
    for c in sorted(_read(folder, "stripe", "charges"), key=lambda c: c["created"]):
        assert "invoice" not in c
        charges[invoice_of[c["payment_intent"]]].append(c)
    failed = [c for cs in charges.values() for c in cs if c["status"] == "failed"]
    assert failed and all(c["failure_code"] and not c["paid"] for c in failed)
    recovered = [i for i, cs in charges.items() if [c["status"] for c in cs] == ["failed", "succeeded"]]
    assert recovered and all(invoices[i]["status"] == "paid" for i in recovered)
    statuses = {i["status"] for i in invoices.values()}
    assert {"paid", "open", "uncollectible"} <= statuses
    for invoice in invoices.values():
        if invoice["status"] in ("open", "uncollectible"):
            assert invoice["amount_paid"] == 0 and invoice["amount_remaining"] == invoice["total"] > 0
            assert all(c["status"] == "failed" for c in charges[invoice["id"]])
    refunded = {r["charge"] for r in _read(folder, "stripe", "refunds")}
    assert refunded and all(c["status"] == "succeeded" for cs in charges.values() for c in cs if c["id"] in refunded)


def test_churned_customers_come_back_with_a_new_subscription(companies):
    subs = defaultdict(list)
    for s in _read(companies["clean"], "stripe", "subscriptions"):
        subs[s["customer"]].append(s)
    returned = [sorted(ss, key=lambda s: s["start_date"]) for ss in subs.values() if len(ss) > 1]
    assert len(returned) >= 5
    for old, new in returned:
        assert old["status"] == "canceled"
        assert new["start_date"] - old["ended_at"] >= 45 * 86400
        assert new["trial_start"] is None


def test_support_load_rises_and_usage_fades_before_churn(companies):
    """In the 60 days before a paying customer cancels, tickets come more often, ratings turn
    bad and product usage falls, compared with the same customers' earlier months."""
    folder = companies["clean"]
    company_of_customer = {c["id"]: c["metadata"]["hubspot_company_id"] for c in _read(folder, "stripe", "customers")}
    paid = {i["parent"]["subscription_details"]["subscription"] for i in _read(folder, "stripe", "invoices")}
    churned = {}  # company -> (paid start, cancellation)
    for s in _read(folder, "stripe", "subscriptions"):
        if (
            s["status"] == "canceled"
            and s["id"] in paid
            and s["trial_end"]
            and s["ended_at"] - s["trial_end"] > 240 * 86400
        ):
            churned[company_of_customer[s["customer"]]] = (_instant(s["trial_end"]), _instant(s["ended_at"]))
    assert len(churned) >= 20
    company_of_org = {o["id"]: o["external_id"] for o in _read(folder, "zendesk", "organizations")}
    workspace_company = {
        c["properties"]["product_workspace_id"]: c["id"] for c in _read(folder, "hubspot", "companies")
    }

    def rates(rows, company_of, at) -> tuple[float, float, list, list]:
        before = after = 0
        early, late = [], []
        for row in rows:
            span = churned.get(company_of(row))
            if not span:
                continue
            when, (start, end) = _instant(at(row)), span
            if end - timedelta(days=60) <= when < end:
                after += 1
                late.append(row)
            elif start <= when < end - timedelta(days=60):
                before += 1
                early.append(row)
        before_days = sum((end - start).days - 60 for start, end in churned.values())
        return before / before_days, after / (60 * len(churned)), early, late

    tickets = {t["id"]: t for t in _read(folder, "zendesk", "tickets")}
    ticket_rate_before, ticket_rate_after, _, _ = rates(
        tickets.values(), lambda t: company_of_org[t["organization_id"]], lambda t: t["created_at"]
    )
    assert ticket_rate_after > 2 * ticket_rate_before

    _, _, early, late = rates(
        _read(folder, "zendesk", "satisfaction_ratings"),
        lambda r: company_of_org[r["organization_id"]],
        lambda r: tickets[r["ticket_id"]]["created_at"],
    )
    bad_share = lambda ratings: sum(r["score"] == "bad" for r in ratings) / len(ratings)  # noqa: E731
    assert bad_share(late) > 2 * bad_share(early)

    usage_before, usage_after, _, _ = rates(
        _events(folder), lambda e: workspace_company[e["account_id"]], lambda e: e["timestamp"]
    )
    assert usage_after < 0.7 * usage_before


# --------------------------------------------------------------------------- defects
def detect_defects(folder: Path, as_of: datetime) -> dict[str, dict[str, set]]:
    """Every known defect class, found from the files as a data engineer would look for it."""
    found: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    valid_email = re.compile(EMAIL_REGEX)
    blank = (None, "")

    def emails(entity: str, rows, email_of) -> None:
        for row in rows:
            email = email_of(row)
            if email in blank:
                found[entity]["missing_email"].add(row["id"])
            elif not valid_email.fullmatch(email):
                found[entity]["invalid_email"].add(row["id"])

    contacts = _read(folder, "hubspot", "contacts")
    emails("hubspot.contacts", contacts, lambda c: c["properties"]["email"])
    for c in contacts:
        if _instant(c["properties"]["createdate"]) > as_of:
            found["hubspot.contacts"]["future_timestamp"].add(c["id"])

    customers = _read(folder, "stripe", "customers")
    emails("stripe.customers", customers, lambda c: c["email"])
    found["stripe.customers"]["missing_required_field"] = {c["id"] for c in customers if c["name"] in blank}

    # CRM against billing: ARR from the subscription items in force, at the budget rates.
    billing_arr: dict[str, float] = defaultdict(float)
    statuses = defaultdict(set)
    for s in _read(folder, "stripe", "subscriptions"):
        statuses[s["customer"]].add(s["status"])
        if s["status"] in PAYING:
            item = s["items"]["data"][0]
            per_year = 12 if item["price"]["recurring"]["interval"] == "month" else 1
            billing_arr[s["customer"]] += (
                item["price"]["unit_amount"] * item["quantity"] * per_year / 100 * USD_RATE[s["currency"]]
            )
    companies = _read(folder, "hubspot", "companies")
    by_domain = defaultdict(list)
    for c in companies:
        p = c["properties"]
        by_domain[p["domain"]].append(c)
        if p["industry"] in blank or p["hubspot_owner_id"] in blank:
            found["hubspot.companies"]["missing_required_field"].add(c["id"])
        billed = billing_arr.get(p["stripe_customer_id"], 0.0)
        if billed and abs(float(p["annualrevenue"]) - billed) > 0.05 * billed:
            found["hubspot.companies"]["crm_arr_mismatch"].add(c["id"])
        if p["customer_status"] == "active" and statuses.get(p["stripe_customer_id"]) == {"canceled"}:
            found["hubspot.companies"]["crm_status_mismatch"].add(c["id"])
    for same in by_domain.values():
        for later in sorted(same, key=lambda c: c["properties"]["createdate"])[1:]:
            found["hubspot.companies"]["duplicate_company"].add(later["id"])

    organizations = {o["id"] for o in _read(folder, "zendesk", "organizations")}
    for t in _read(folder, "zendesk", "tickets"):
        if t["organization_id"] not in organizations:
            found["zendesk.tickets"]["orphan_ticket"].add(t["id"])
        if t["subject"] in blank:
            found["zendesk.tickets"]["missing_required_field"].add(t["id"])

    for e in _events(folder):
        happened, received = _instant(e["timestamp"]), _instant(e["received_at"])
        if not EVENT_NAME.fullmatch(e["event"]):
            found["usage.events"]["malformed_event_name"].add(e["message_id"])
        if received - happened > timedelta(days=1):
            found["usage.events"]["late_event"].add(e["message_id"])
        if happened > as_of:
            found["usage.events"]["future_timestamp"].add(e["message_id"])
    return {
        entity: {k: v for k, v in classes.items() if v} for entity, classes in found.items() if any(classes.values())
    }


def _last_received(folder: Path) -> datetime:
    return max(_instant(e["received_at"]) for e in _events(folder))


def test_every_defect_class_is_found_in_the_files_exactly_as_recorded(companies):
    folder = companies["defects"]
    truth = _manifest(folder)["defects"]
    assert truth["enabled"] and truth["rates"] == DefectRates().__dict__
    recorded = {entity: {k: set(v) for k, v in classes.items()} for entity, classes in truth["records"].items()}
    assert detect_defects(folder, AS_OF_INSTANT) == recorded

    # With the default rates on the small company every class is present at least once.
    classes = {k for per_entity in recorded.values() for k in per_entity}
    rates = {name for name, rate in DefectRates().__dict__.items() if rate and name != "stale_usage_feed_days"}
    assert classes == rates

    # The usage feed stopped three days before the as-of date; the clean company's did not.
    [(feed, stale)] = truth["stale_feeds"].items()
    assert feed == "usage.events" and stale["days"] == 3
    stopped = _instant(stale["stopped_at"])
    assert stopped == AS_OF_INSTANT - timedelta(days=3)
    assert _last_received(folder) == _instant(stale["last_received_at"]) < stopped
    assert _last_received(companies["clean"]) > stopped


def test_the_clean_company_has_no_defects(companies):
    folder = companies["clean"]
    truth = _manifest(folder)["defects"]
    assert truth == {"enabled": False, "rates": DefectRates.none().__dict__, "records": {}, "stale_feeds": {}}
    assert detect_defects(folder, AS_OF_INSTANT) == {}


def test_defects_are_an_overlay_on_the_same_company(companies):
    """Files no defect touches are byte-identical with and without defects, and no defect
    takes a record's id away."""
    clean, defects = (_digest(companies[k] / "sources") for k in ("clean", "defects"))
    for untouched in (
        "stripe/subscriptions.jsonl",
        "stripe/invoices.jsonl",
        "stripe/charges.jsonl",
        "zendesk/organizations.jsonl",
        "zendesk/users.jsonl",
        "hubspot/deals.jsonl",
    ):
        assert clean[untouched] == defects[untouched], untouched
    for system, obj in (
        ("hubspot", "companies"),
        ("hubspot", "contacts"),
        ("stripe", "customers"),
        ("zendesk", "tickets"),
    ):
        assert all(r["id"] is not None for r in _read(companies["defects"], system, obj))
    assert all(e["message_id"] and e["event"] and e["timestamp"] for e in _events(companies["defects"]))


def test_defect_rates_parse():
    assert DefectRates.parse(None) == DefectRates.parse("default") == DefectRates()
    assert DefectRates.parse("none") == DefectRates.parse("clean") == DefectRates.none()
    assert not DefectRates.none().enabled
    only_late = DefectRates.parse("none,late_event=0.05")
    assert only_late == DefectRates.none().__class__(**{**DefectRates.none().__dict__, "late_event": 0.05})
    assert DefectRates.parse("stale_usage_feed_days=0").stale_usage_feed_days == 0
    for bad in ("typo=0.1", "late_event", "late_event=2"):
        with pytest.raises(ValueError):
            DefectRates.parse(bad)


def test_cli_generates_a_clean_company_on_request(tmp_path):
    from command_line.main import main

    runner = CliRunner()
    env = {"SPINE_DATA_DIR": str(tmp_path)}
    result = runner.invoke(main, ["generate", "--preset", "tiny", "--as-of", "2026-11-21", "--clean"], env=env)
    assert result.exit_code == 0, result.output
    assert not _manifest(tmp_path)["defects"]["enabled"]
    result = runner.invoke(
        main,
        ["generate", "--preset", "tiny", "--as-of", "2026-11-21"],
        env=env | {"SPINE_DEFECTS": "none,orphan_ticket=0.1"},
    )
    assert result.exit_code == 0, result.output
    assert set(_manifest(tmp_path)["defects"]["records"]) == {"zendesk.tickets"}
    result = runner.invoke(main, ["generate", "--preset", "tiny", "--defects", "typo=1"], env=env)
    assert result.exit_code != 0 and "unknown defect setting" in result.output
