"""Change a share of the sample company's records, as a day of work in the SaaS tools would.

Edits the vendor files a local vendor API serves (a running server picks the edits up) the way
each vendor records a change: Stripe writes an event carrying the object (and drops a deleted
customer from its lists), HubSpot bumps the last-modified date (and archives), Zendesk bumps
`updated_at` (and marks deletions in the record). Returns which ids changed, so a test can
check that the next incremental load brings exactly these.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from sample_company.variants import LATEST_STRIPE_VERSION
from sample_company.vendor_api.server import index_files

ISO_MS = "%Y-%m-%dT%H:%M:%S.000Z"
ISO_S = "%Y-%m-%dT%H:%M:%SZ"
# Of the records picked for a change, this share is deleted (archived, cancelled) instead.
DELETE_SHARE = 0.2


@dataclass
class Changed:
    updated: list = field(default_factory=list)
    deleted: list = field(default_factory=list)

    @property
    def ids(self) -> set:
        return set(self.updated) | set(self.deleted)


def _read(path: Path) -> list[dict]:
    with path.open("rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    # Replace the file in one step: a server reading it meanwhile sees the old or the new file.
    # Compact, as the generator writes: the local APIs serve the records' lines as they are.
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        for r in rows:
            f.write(orjson.dumps(r) + b"\n")
    os.replace(tmp, path)


def _pick(
    rng: np.random.Generator, rows: list[dict], fraction: float, eligible: Callable[[dict], bool]
) -> tuple[list[int], list[int]]:
    """Positions to update and to delete: `fraction` of the eligible rows, at least one."""
    candidates = [i for i, r in enumerate(rows) if r.get("id") is not None and eligible(r)]
    if not candidates or fraction <= 0:
        return [], []
    n = max(1, round(len(candidates) * fraction))
    chosen = rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist()
    n_deleted = int(len(chosen) * DELETE_SHARE)
    return sorted(chosen[n_deleted:]), sorted(chosen[:n_deleted])


def _stripe(folder: Path, rng, fraction: float, at: datetime) -> dict[str, Changed]:
    ts = int(at.timestamp())
    events: list[dict] = []
    changed: dict[str, Changed] = {}

    def emit(kind: str, obj: dict) -> None:
        events.append(
            {
                "id": f"evt_{ts}_{len(events):06d}",
                "object": "event",
                "type": kind,
                "created": ts,
                "api_version": LATEST_STRIPE_VERSION,
                "data": {"object": copy.deepcopy(obj)},
            }
        )

    def note(obj: dict) -> None:
        obj["metadata"] = {**(obj.get("metadata") or {}), "reviewed_at": str(ts)}

    # Customers: a new billing email; some are deleted and disappear from the list.
    rows = _read(folder / "customers.jsonl")
    upd, dele = _pick(rng, rows, fraction, lambda r: True)
    for i in upd:
        domain = (rows[i].get("email") or "@example.com").split("@")[-1]
        rows[i]["email"] = f"billing@{domain}"
        note(rows[i])
        emit("customer.updated", rows[i])
    for i in dele:
        emit("customer.deleted", rows[i])
    changed["customers"] = Changed([rows[i]["id"] for i in upd], [rows[i]["id"] for i in dele])
    gone = set(dele)
    _write(folder / "customers.jsonl", [r for i, r in enumerate(rows) if i not in gone])

    # Subscriptions: one more seat; some live ones are cancelled now.
    rows = _read(folder / "subscriptions.jsonl")
    upd, dele = _pick(rng, rows, fraction, lambda r: r.get("status") in ("active", "trialing", "past_due"))
    for i in upd:
        item = rows[i]["items"]["data"][0]
        item["quantity"] = int(item.get("quantity") or 0) + 1
        emit("customer.subscription.updated", rows[i])
    for i in dele:
        rows[i].update(status="canceled", canceled_at=ts, ended_at=ts)
        emit("customer.subscription.deleted", rows[i])
    changed["subscriptions"] = Changed([rows[i]["id"] for i in upd], [rows[i]["id"] for i in dele])
    _write(folder / "subscriptions.jsonl", rows)

    # Everything else: reviewed (a metadata change), no deletions.
    for obj, kind in (
        ("products", "product.updated"),
        ("prices", "price.updated"),
        ("invoices", "invoice.updated"),
        ("charges", "charge.updated"),
        ("refunds", "refund.updated"),
    ):
        rows = _read(folder / f"{obj}.jsonl")
        upd, more = _pick(rng, rows, fraction, lambda r: True)
        upd = sorted(upd + more)
        for i in upd:
            note(rows[i])
            emit(kind, rows[i])
        changed[obj] = Changed([rows[i]["id"] for i in upd], [])
        _write(folder / f"{obj}.jsonl", rows)

    path = folder / "events.jsonl"
    _write(path, (_read(path) if path.exists() else []) + events)
    return changed


HUBSPOT_EDITS = {
    "companies": ("hs_lastmodifieddate", lambda p: p.update(industry="software")),
    "contacts": ("lastmodifieddate", lambda p: p.update(jobtitle="Director")),
    "deals": ("hs_lastmodifieddate", lambda p: p.update(amount=str(round(float(p.get("amount") or 0) * 1.1, 2)))),
}


def _hubspot(folder: Path, rng, fraction: float, at: datetime) -> dict[str, Changed]:
    stamp = at.strftime(ISO_MS)
    changed = {}
    for obj, (modified, edit) in HUBSPOT_EDITS.items():
        rows = _read(folder / f"{obj}.jsonl")
        upd, arch = _pick(rng, rows, fraction, lambda r: not r.get("archived"))
        for i in upd:
            edit(rows[i]["properties"])
        for i in arch:
            rows[i].update(archived=True, archivedAt=stamp)
        for i in upd + arch:
            rows[i]["properties"][modified] = stamp
            rows[i]["updatedAt"] = stamp
        changed[obj] = Changed([rows[i]["id"] for i in upd], [rows[i]["id"] for i in arch])
        _write(folder / f"{obj}.jsonl", rows)
    return changed


def _zendesk(folder: Path, rng, fraction: float, at: datetime) -> dict[str, Changed]:
    stamp = at.strftime(ISO_S)
    changed = {}

    tickets = _read(folder / "tickets.jsonl")
    upd, dele = _pick(rng, tickets, fraction, lambda r: r.get("status") != "deleted")
    for i in upd:
        tickets[i]["priority"] = "high" if tickets[i].get("priority") != "high" else "urgent"
    for i in dele:
        tickets[i]["status"] = "deleted"
    for i in upd + dele:
        tickets[i]["updated_at"] = stamp
    changed["tickets"] = Changed([tickets[i]["id"] for i in upd], [tickets[i]["id"] for i in dele])
    _write(folder / "tickets.jsonl", tickets)

    # A ticket's metric set is updated with its ticket.
    touched = changed["tickets"].ids
    metrics = _read(folder / "ticket_metrics.jsonl")
    for m in metrics:
        if m.get("ticket_id") in touched:
            m["updated_at"] = stamp
    changed["ticket_metrics"] = Changed(sorted(m["id"] for m in metrics if m.get("ticket_id") in touched), [])
    _write(folder / "ticket_metrics.jsonl", metrics)

    for obj, edit, delete in (
        ("users", lambda r: r.update(name=r.get("name", "") + " Jr."), lambda r: r.update(active=False)),
        ("organizations", lambda r: r.update(notes="Key account"), lambda r: r.update(deleted_at=stamp)),
        ("satisfaction_ratings", lambda r: r.update(score="bad" if r.get("score") == "good" else "good"), None),
    ):
        rows = _read(folder / f"{obj}.jsonl")
        upd, dele = _pick(rng, rows, fraction, lambda r: r.get("active", True) and not r.get("deleted_at"))
        if delete is None:
            upd, dele = sorted(upd + dele), []
        for i in upd:
            edit(rows[i])
        for i in dele:
            delete(rows[i])
        for i in upd + dele:
            rows[i]["updated_at"] = stamp
        changed[obj] = Changed([rows[i]["id"] for i in upd], [rows[i]["id"] for i in dele])
        _write(folder / f"{obj}.jsonl", rows)
    return changed


def change_sources(
    sources_dir: Path, fraction: float = 0.01, seed: int = 1, at: datetime | None = None
) -> dict[str, dict[str, Changed]]:
    """Update (and delete) `fraction` of every API object's records; returns the ids per object."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    at = (at or datetime.now(UTC)).replace(microsecond=0)
    rng = np.random.default_rng(seed)
    changed = {
        "stripe": _stripe(sources_dir / "stripe", rng, fraction, at),
        "hubspot": _hubspot(sources_dir / "hubspot", rng, fraction, at),
        "zendesk": _zendesk(sources_dir / "zendesk", rng, fraction, at),
    }
    index_files(sources_dir)
    return changed


def describe(changed: dict[str, dict[str, Changed]]) -> list[str]:
    """One line per system: what changed in each of its objects."""
    return [
        f"{system}: "
        + "; ".join(
            f"{obj} {len(c.updated)} updated" + (f", {len(c.deleted)} deleted" if c.deleted else "")
            for obj, c in objects.items()
        )
        for system, objects in changed.items()
    ]
