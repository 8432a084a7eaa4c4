"""Stripe-style list API: `GET /v1/<objects>` and `GET /v1/events`, with Bearer auth.

Lists are newest first, paged with `limit` (max 100) and `starting_after=<id>`, filtered with
`created[gt|gte|lt|lte]`; subscriptions exclude canceled ones unless `status=all`, and deleted
objects are gone from lists, as on Stripe. What changed is told by events (`customer.updated`,
`customer.deleted`, ...), each carrying the object as it was then; `type=customer.*` filters by
prefix. Objects are rendered in the API version the request asks for (`Stripe-Version`) or the
account's default: before 2025-03-31 the current period sat on the subscription and an
invoice named its subscription at the top level.
"""

from __future__ import annotations

import bisect
import copy

from sample_company.vendor_api.store import RecordStore

OBJECTS = ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")
LISTABLE = OBJECTS + ("events",)
CURRENT_VERSION = "2025-03-31"


def _error(status: int, message: str, type_: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"type": type_, "message": message}}


def authorized(headers, api_key: str) -> bool:
    return headers.get("Authorization", "") == f"Bearer {api_key}"


def render(obj: dict, version: str) -> dict:
    """The object as an account pinned to `version` receives it."""
    if version >= CURRENT_VERSION or obj.get("object") not in ("subscription", "invoice"):
        return obj
    old = copy.deepcopy(obj)
    if old["object"] == "subscription":
        items = (old.get("items") or {}).get("data") or []
        for item in items:
            start, end = item.pop("current_period_start", None), item.pop("current_period_end", None)
            old.setdefault("current_period_start", start)
            old.setdefault("current_period_end", end)
    else:
        parent = old.pop("parent", None) or {}
        old["subscription"] = (parent.get("subscription_details") or {}).get("subscription")
    return old


def _key(r: dict) -> tuple[int, str]:
    return -(r.get("created") or 0), r.get("id") or ""


def _newest_first(rows: list[dict]) -> tuple[list[dict], list[tuple[int, str]], dict[str, tuple[int, str]]]:
    """Sorted rows, their sort keys, and each id's key: pages are found by bisection."""
    ordered = sorted(rows, key=_key)
    keys = [_key(r) for r in ordered]
    return ordered, keys, {r["id"]: k for r, k in zip(ordered, keys) if r.get("id")}


def handle(store: RecordStore, path: str, params: dict[str, str], version: str = CURRENT_VERSION) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
    if len(parts) != 2 or parts[0] != "v1" or parts[1] not in LISTABLE:
        return _error(404, f"Unrecognized request URL (GET: /{path.strip('/')}).")
    obj = parts[1]
    try:
        limit = int(params.get("limit", "10"))
    except ValueError:
        return _error(400, "Invalid integer: limit")
    if not 1 <= limit <= 100:
        return _error(400, "limit must be between 1 and 100")

    rows, keys, key_of = store.derived("stripe", obj, "newest_first", _newest_first, optional=obj == "events")
    filtered = False

    if obj == "subscriptions" and params.get("status", "") != "all":
        wanted = params.get("status")
        rows = [r for r in rows if (r["status"] == wanted if wanted else r["status"] != "canceled")]
        filtered = True
    if obj == "events" and params.get("type"):
        wanted = params["type"]
        if wanted.endswith(".*"):
            prefix = wanted[:-1]
            rows = [r for r in rows if r["type"].startswith(prefix)]
        else:
            rows = [r for r in rows if r["type"] == wanted]
        filtered = True
    for op, test in (
        ("gt", lambda v, x: v > x),
        ("gte", lambda v, x: v >= x),
        ("lt", lambda v, x: v < x),
        ("lte", lambda v, x: v <= x),
    ):
        bound = params.get(f"created[{op}]")
        if bound is not None:
            rows = [r for r in rows if test(r["created"], int(bound))]
            filtered = True

    start = 0
    after = params.get("starting_after")
    if after:
        if after not in key_of:
            return _error(400, f"No such object: '{after}'", "invalid_request_error")
        if filtered:
            keys = [_key(r) for r in rows]
        start = bisect.bisect_right(keys, key_of[after])
    page = rows[start : start + limit]
    if obj == "events":
        page = [{**e, "data": {**e["data"], "object": render(e["data"]["object"], version)}} for e in page]
    else:
        page = [render(r, version) for r in page]
    return 200, {
        "object": "list",
        "url": f"/v1/{obj}",
        "has_more": start + limit < len(rows),
        "data": page,
    }
