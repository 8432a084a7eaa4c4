"""Data-subject requests end to end on the `tiny` company: `spine privacy access` and `spine
privacy erase` as a person types them, after a real `spine run`, against the local vendor APIs;
then a second full ingestion from vendors that have the person again (restored from a backup)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from pipeline_runs import AS_OF, copy_of, spine_env, spine_run

from data_spine.settings import PROJECT_ROOT, settings
from privacy.scan import scan_files, scan_warehouse, written_folders
from sample_company.presets import PRESETS
from sample_company.simulate import simulate


def _spine(root: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "command_line.main", *args],
        cwd=PROJECT_ROOT,
        env={**spine_env(root), "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run(root: Path, name: str) -> None:
    log = root / f"{name}.log"
    assert spine_run(root, log).wait(timeout=900) == 0, log.read_text()[-3000:]


def _rows(warehouse: Path, sql: str, *params) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture(scope="module")
def company_run(tmp_path_factory, clean_tiny):
    return copy_of(clean_tiny, tmp_path_factory.mktemp("subject_requests"))


def _person(root: Path) -> dict:
    """A HubSpot contact who is also a Zendesk user and the bill-to email of a Stripe customer
    whose company no longer pays (deleting it at Stripe cancels nothing), with their product
    user id as the sample company's generator made it."""
    warehouse = root / "data" / "warehouse.duckdb"
    email, contact_id, first, last, user_id, customer_id = _rows(
        warehouse,
        """
        select lower(c.email), c.id, c.firstname, c.lastname, u.id, s.id
        from raw_hubspot.contacts c
        join raw_zendesk.users u on lower(u.email) = lower(c.email)
        join raw_stripe.customers s on lower(s.email) = lower(c.email)
        where not exists (
            select 1 from raw_stripe.subscriptions sub
            where sub.customer = s.id and sub.status in ('active', 'trialing', 'past_due', 'unpaid')
        )
        order by c.id limit 1
        """,
    )[0]
    contacts = simulate(PRESETS["tiny"], 42, AS_OF).contacts
    product_user = contacts.filter(contacts["crm_contact_id"] == contact_id)["product_user_id"][0]
    return {
        "email": email,
        "name": f"{first} {last}",
        "ids": [contact_id, str(user_id), product_user],
        "stripe_customer": customer_id,
        "product_user": product_user,
    }


def _mrr_by_month(root: Path) -> list[tuple]:
    return _rows(root / "data" / "warehouse.duckdb", "select month, closing_mrr from serving.mrr_bridge order by month")


def _findings(root: Path, person: dict) -> list[str]:
    cfg = dataclasses.replace(
        settings(),
        data_dir=root / "data",
        warehouse=root / "data" / "warehouse.duckdb",
        landing_dir=root / "data" / "landing" / "usage_events",
        dagster_home=root / "dagster_home",
        alerts=None,
    )
    words = [person["email"], person["name"].lower()]
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        found = scan_warehouse(con, words, person["ids"])
    found += scan_files(written_folders(cfg), words, person["ids"])
    return [f.describe() for f in found]


def test_access_then_erasure_then_a_second_full_ingestion(company_run):
    root = company_run
    data = root / "data"
    person = _person(root)
    assert _findings(root, person), "the person should be in the warehouse before anything is erased"
    look_for = ["--email", person["email"], "--name", person["name"], *(a for i in person["ids"] for a in ("--id", i))]
    found = _spine(root, "privacy", "scan", *look_for)
    assert found.returncode == 1 and "raw_hubspot.contacts.email" in found.stdout, found.stdout + found.stderr

    # Access: every record about them, in every layer, with the system it came from.
    who = ["--email", person["email"], "--product-user-id", person["product_user"]]
    done = _spine(root, "privacy", "access", "--email", person["email"].upper(), *who[2:])
    assert done.returncode == 0, done.stdout + done.stderr
    exports = list((data / "privacy" / "exports").iterdir())
    assert len(exports) == 1
    document = json.loads((exports[0] / "subject_access.json").read_text())
    layers = document["layers"]
    assert {"raw", "staging", "marts", "serving"} <= set(layers)
    assert {"raw_hubspot.contacts", "raw_zendesk.users", "raw_stripe.customers", "raw_usage_events.events"} <= set(
        layers["raw"]
    )
    assert "marts.contacts" in layers["marts"] and "serving.contacts" in layers["serving"]
    assert {r["_system"] for r in layers["raw"]["raw_zendesk.users"]} == {"zendesk"}
    assert {r["_system"] for r in layers["marts"]["marts.contacts"]} == {"hubspot", "stripe"}
    assert all(r["user_id"] == person["product_user"] for r in layers["raw"]["raw_usage_events.events"])
    assert document["landing_folder"], "the usage-event lines in the landing folder belong to the export"
    assert (exports[0] / "raw_hubspot.contacts.csv").read_text().lower().count(person["email"]) == 1
    assert person["email"] not in done.stdout.lower()

    mrr_before = _mrr_by_month(root)
    events = "select count(*), count(distinct user_id) from marts.usage_events"
    events_before = _rows(data / "warehouse.duckdb", events)
    backup = root / "vendor_backup"
    shutil.copytree(data / "sources", backup)

    # Erasure.
    done = _spine(root, "privacy", "erase", *who)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified: 0 occurrence(s) left" in done.stdout
    assert _findings(root, person) == []
    assert _spine(root, "privacy", "scan", *look_for).stdout.strip() == "found nowhere"
    assert _mrr_by_month(root) == mrr_before
    assert (
        _rows(data / "warehouse.duckdb", "select count(*), count(distinct user_id) from marts.usage_events")
        == events_before
    )
    assert not (data / "privacy" / "exports" / exports[0].name).exists(), "the earlier export is erased too"

    # The vendors received their own deletion calls.
    received = {
        vendor: [
            json.loads(line)
            for line in (data / "sources" / vendor / "deletion_requests.jsonl").read_text().splitlines()
        ]
        for vendor in ("hubspot", "zendesk", "stripe")
    }
    assert any("gdpr-delete" in r["path"] for r in received["hubspot"])
    assert any("/deleted_users/" in r["path"] for r in received["zendesk"])
    assert any(r["method"] == "DELETE" and person["stripe_customer"] in r["path"] for r in received["stripe"])

    # The audit keeps the request by hash only.
    audit = _rows(data / "warehouse.duckdb", "select kind, subject_hash, status, steps from privacy.subject_requests")
    assert [(kind, status) for kind, _, status, _ in audit] == [("erasure", "done")] or {
        (kind, status) for kind, _, status, _ in audit
    } == {("access", "done"), ("erasure", "done")}
    assert all(person["email"] not in json.dumps(row).lower() for row in audit)

    # A second full ingestion, from vendors restored from a backup that still has the person.
    shutil.rmtree(data / "sources")
    shutil.copytree(backup, data / "sources")
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        for source in ("hubspot", "zendesk", "stripe"):
            con.execute(f"delete from raw_{source}._dlt_pipeline_state")  # forget the cursors: read everything
    _run(root, "second")
    assert _findings(root, person) == []
    assert _mrr_by_month(root) == mrr_before
    duplicates = _rows(
        data / "warehouse.duckdb",
        "select count(*) - count(distinct id) from raw_hubspot.contacts union all "
        "select count(*) - count(distinct id) from raw_zendesk.users",
    )
    assert duplicates == [(0,), (0,)]
