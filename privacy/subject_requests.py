"""The steps of a data-subject request, each one safe to run again.

    receive ─► resolve ─► (access)  export ─────────────────────────────► complete
                      └─► (erasure) sources ─► warehouse ─► verify ─────► complete

- `receive` registers the request and keeps the person's identifiers in its pending file.
- `resolve` finds the person in the raw tables (`subjects.resolve`) and the billing accounts
  that carry their email, once, before anything is erased; a retry reads what it found.
- `at_sources` asks each source system to delete the person through its own API (HubSpot's
  GDPR delete, Zendesk's permanent user deletion, Stripe's customer deletion, or, for a
  company still billed, Stripe's customer update clearing the email: deleting the customer
  would cancel the company's subscriptions). A call that fails after its retries is reported
  and makes the step fail, so the job retries it; a record the vendor no longer has is done.
- `in_warehouse` anonymises the person everywhere the project stores data (`erasure.py`) and
  adds them to the suppression list, then removes earlier exports made for them.
- `verify` scans every store (`scan.py`) and fails, naming places and counts only, while
  anything is found.
- `complete` writes the audit row (`privacy.subject_requests`, the subject's hash only),
  closes the request and deletes its pending identifiers.

What a step returns and logs names places, counts and pseudonyms, never the person.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from connectors import source_erasure
from data_spine.settings import Settings
from privacy import erasure, export, scan, suppression
from privacy.keys import keyed_hash, privacy_key, pseudonym
from privacy.requests import RequestRegister, SubjectRequest
from privacy.subjects import Subject, normalise_email, resolve

AUDIT = "privacy.subject_requests"
# Stripe subscription statuses that still bill (https://docs.stripe.com/api/subscriptions/object#subscription_object-status).
BILLING = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")


class VerificationFailed(RuntimeError):
    pass


class SourceErasureFailed(RuntimeError):
    pass


def register(cfg: Settings) -> RequestRegister:
    return RequestRegister(cfg.privacy_dir)


def receive(
    cfg: Settings,
    kind: str,
    emails: list[str] = (),
    ids: Mapping[str, list[str]] | None = None,
    received_at: datetime | None = None,
) -> SubjectRequest:
    emails = [normalise_email(e) for e in emails if e and e.strip()]
    ids = {kind_: [str(v) for v in values] for kind_, values in (ids or {}).items() if values}
    if not emails and not ids:
        raise ValueError("a request names its person: give an email or an id")
    key = privacy_key(cfg)
    first = min(emails) if emails else min(v for values in ids.values() for v in values)
    return register(cfg).receive(kind, keyed_hash(key, first), {"emails": emails, "ids": ids}, received_at)


def _subject(found: dict[str, Any]) -> Subject:
    return Subject(
        emails=frozenset(found.get("emails", ())),
        ids={k: frozenset(v) for k, v in found.get("ids", {}).items()},
        names=frozenset(found.get("names", ())),
    )


def _save_pending(cfg: Settings, request_id: str, found: dict[str, Any]) -> None:
    path = register(cfg).pending_dir / f"{request_id}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(found))
    partial.chmod(0o600)
    partial.replace(path)


def resolved(cfg: Settings, request_id: str) -> Subject:
    return _subject(register(cfg).identifiers(request_id))


def resolve_step(cfg: Settings, request_id: str) -> dict[str, Any]:
    """Find the person once; what was found stays in the pending file for the other steps."""
    pending = register(cfg).identifiers(request_id)
    if not pending.get("resolved"):
        with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
            subject = resolve(con, pending.get("emails", ()), pending.get("ids", {}))
            accounts = _billing_accounts(con, subject)
        pending = {
            "resolved": True,
            "emails": sorted(subject.emails),
            "ids": {k: sorted(v) for k, v in subject.ids.items()},
            "names": sorted(subject.names),
            "stripe_customers": accounts,
        }
        _save_pending(cfg, request_id, pending)
    subject = _subject(pending)
    return {
        "emails": len(subject.emails),
        "ids": {k: len(v) for k, v in subject.ids.items()},
        "names": len(subject.names),
        "billing_accounts": len(pending.get("stripe_customers", [])),
    }


def _billing_accounts(con: duckdb.DuckDBPyConnection, subject: Subject) -> list[dict[str, Any]]:
    """Stripe customers whose email is the person's, and whether the company is still billed."""
    if not subject.emails:
        return []
    try:
        rows = con.execute(
            "SELECT c.id, bool_or(s.status IN (SELECT unnest(?))) FROM raw_stripe.customers c "
            "LEFT JOIN raw_stripe.subscriptions s ON s.customer = c.id AND NOT coalesce(s.deleted, false) "
            f"WHERE lower(trim(c.email)) IN ({', '.join('?' * len(subject.emails))}) GROUP BY c.id ORDER BY c.id",
            [list(BILLING), *sorted(subject.emails)],
        ).fetchall()
    except duckdb.CatalogException:  # no billing source loaded
        return []
    return [{"id": cid, "billed": bool(billed)} for cid, billed in rows]


EraseCall = Callable[..., Any]


def at_sources(
    cfg: Settings, request_id: str, overrides: Mapping[str, Mapping[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Ask every source system to delete the person; the calls, their object ids pseudonymised.
    Raises `SourceErasureFailed` (after recording what succeeded) when any call failed."""
    overrides = overrides or {}
    pending = register(cfg).identifiers(request_id)
    subject = _subject(pending)
    key = privacy_key(cfg)
    calls = []
    for contact in sorted(subject.ids_of("hubspot_contact")):
        calls.append(source_erasure.erase_hubspot_contact(contact, **overrides.get("hubspot", {})))
    for user in sorted(subject.ids_of("zendesk_user")):
        calls.append(source_erasure.erase_zendesk_user(user, **overrides.get("zendesk", {})))
    for account in pending.get("stripe_customers", []):
        calls.append(
            source_erasure.erase_stripe_customer(
                account["id"], keep_account=account["billed"], **overrides.get("stripe", {})
            )
        )
    reported = [
        {
            "system": c.system,
            "action": c.action,
            "object": pseudonym(key, c.object_id),
            "status": c.status,
            # The vendor's answer may name the object: its pseudonym stands in.
            "detail": c.detail.replace(c.object_id, pseudonym(key, c.object_id)),
        }
        for c in calls
    ]
    failed = [r for r in reported if r["status"] == "failed"]
    if failed:
        raise SourceErasureFailed(
            "; ".join(f"{r['system']} {r['action']} of {r['object']}: {r['detail']}" for r in failed)
        )
    return reported


def in_warehouse(cfg: Settings, request_id: str) -> list[dict[str, Any]]:
    """Anonymise the person in every store the project owns and suppress them from later loads."""
    subject = resolved(cfg, request_id)
    key = privacy_key(cfg)
    with duckdb.connect(str(cfg.warehouse)) as con:
        touched = erasure.erase_warehouse(con, subject, key)
        suppression.record(con, subject, key, request_id)
    touched.append(erasure.compact(cfg.warehouse))
    touched += erasure.erase_landing_files(cfg.landing_dir, subject, key)
    touched += erasure.remove_load_packages(cfg.dlt_dir)
    touched += _close_other_requests(cfg, request_id)
    return [t.to_json() for t in touched]


def _close_other_requests(cfg: Settings, request_id: str) -> list[erasure.Touched]:
    """The person's other requests hold copies too: exports made for them are removed, and
    open ones are closed as superseded, their pending identifiers deleted."""
    requests = register(cfg)
    touched = []
    for other in requests.of_subject(requests.get(request_id).subject_hash):
        if other.id == request_id:
            continue
        folder = requests.exports_dir / other.id
        if folder.exists():
            shutil.rmtree(folder)
            touched.append(erasure.Touched("export", other.id, 0, "removed"))
        if other.is_open:
            requests.complete(other.id, run_id="", steps=[{"superseded_by": request_id}])
            touched.append(erasure.Touched("request", other.id, 0, "superseded"))
    return touched


def verify(cfg: Settings, request_id: str) -> dict[str, Any]:
    """Scan every store for the person; raises `VerificationFailed` naming where, never what."""
    subject = resolved(cfg, request_id)
    words = sorted({*subject.emails, *subject.names})
    ids = sorted(subject.all_ids())
    # The request's own identifiers wait in its pending file until `complete` deletes them.
    findings = scan.scan(cfg, words, ids, skip=[register(cfg).pending_dir / f"{request_id}.json"])
    if findings:
        raise VerificationFailed(
            f"the person is still found in {len(findings)} place(s): " + "; ".join(f.describe() for f in findings[:20])
        )
    return {
        "searched_for": len(words) + len(ids),
        "found": 0,
        "stores": ["warehouse", *map(str, scan.written_folders(cfg))],
    }


def access(cfg: Settings, request_id: str) -> dict[str, Any]:
    subject = resolved(cfg, request_id)
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        found = export.records(con, subject)
    landing = export.landing_lines(cfg.landing_dir, subject)
    return export.write(register(cfg).exports_dir / request_id, request_id, found, landing)


def complete(cfg: Settings, request_id: str, run_id: str, steps: list[dict[str, Any]]) -> SubjectRequest:
    """The audit row, then the request closed and its identifiers deleted."""
    request = register(cfg).get(request_id)
    now = datetime.now(UTC)
    with duckdb.connect(str(cfg.warehouse)) as con:
        ensure_audit(con)
        con.execute(
            f"INSERT OR REPLACE INTO {AUDIT} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                request.id,
                request.kind,
                request.subject_hash,
                datetime.fromisoformat(request.received_at).replace(tzinfo=None),
                now.replace(tzinfo=None),
                run_id,
                "done",
                json.dumps(steps),
            ],
        )
    return register(cfg).complete(request_id, run_id, steps, now)


def ensure_audit(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS privacy")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {AUDIT} (request_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, "
        "subject_hash VARCHAR NOT NULL, received_at TIMESTAMP NOT NULL, completed_at TIMESTAMP, run_id VARCHAR, "
        "status VARCHAR NOT NULL, steps JSON)"
    )


def export_folder(cfg: Settings, request_id: str) -> Path:
    return register(cfg).exports_dir / request_id
