"""Stripe-style list API: `GET /v1/<objects>` and `GET /v1/events`, with Bearer auth.

Lists are newest first, paged with `limit` (max 100) and `starting_after=<id>`, filtered with
`created[gt|gte|lt|lte]`; subscriptions exclude canceled ones unless `status=all`, and deleted
objects are gone from lists, as on Stripe. What changed is told by events (`customer.updated`,
`customer.deleted`, ...), each carrying the object as it was then; `type=customer.*` filters by
prefix. Objects are rendered in the API version the request asks for (`Stripe-Version`) or the
account's default: before 2025-03-31 the current period sat on the subscription, an invoice
named its subscription at the top level, and an invoice line its price (the whole object) and
subscription item.
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
        for line in (old.get("lines") or {}).get("data") or []:
            # Lines named their price (whole) and subscription item at the top level.
            pricing = line.pop("pricing", None) or {}
            details = pricing.get("price_details") or {}
            line["price"] = {"id": details.get("price"), "object": "price", "product": details.get("product"),
                             "unit_amount": int(pricing["unit_amount_decimal"]) if pricing.get("unit_amount_decimal") else None,
                             "currency": line.get("currency")}
            item = (line.pop("parent", None) or {}).get("subscription_item_details") or {}
            line["subscription"], line["subscription_item"] = item.get("subscription"), item.get("subscription_item")
            line["proration"] = bool(item.get("proration"))
    return old


def _key(r: dict) -> tuple[int, str]:
    return -(r.get("created") or 0), r.get("id") or ""


def newest_first(rows: list[dict]) -> tuple[list[dict], list[tuple[int, str]], dict[str, tuple[int, str]]]:
    """Sorted rows, their sort keys, and each id's key: pages are found by bisection."""
    ordered = sorted(rows, key=_key)
    keys = [_key(r) for r in ordered]
    return ordered, keys, {r["id"]: k for r, k in zip(ordered, keys) if r.get("id")}


COMPARISONS = {
    "gt": lambda v, x: v > x,
    "gte": lambda v, x: v >= x,
    "lt": lambda v, x: v < x,
    "lte": lambda v, x: v <= x,
}


def _filters(obj: str, params: dict[str, str]) -> tuple:
    """The request's filters, in a form that names a filtered list (empty: no filter)."""
    filters: list[tuple] = []
    if obj == "subscriptions" and params.get("status", "") != "all":
        filters.append(("status", params.get("status") or None))
    if obj == "events" and params.get("type"):
        filters.append(("type", params["type"]))
    for op in COMPARISONS:
        bound = params.get(f"created[{op}]")
        if bound is not None:
            filters.append((op, int(bound)))
    return tuple(filters)


def _filtered(rows: list[dict], filters: tuple) -> tuple[list[dict], list[tuple[int, str]]]:
    for name, wanted in filters:
        if name == "status":
            rows = [r for r in rows if (r["status"] == wanted if wanted else r["status"] != "canceled")]
        elif name == "type" and wanted.endswith(".*"):
            rows = [r for r in rows if r["type"].startswith(wanted[:-1])]
        elif name == "type":
            rows = [r for r in rows if r["type"] == wanted]
        else:
            rows = [r for r in rows if COMPARISONS[name](r["created"], wanted)]
    return rows, [_key(r) for r in rows]


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

    rows, keys, key_of = store.derived("stripe", obj, "newest_first", newest_first, optional=obj == "events")
    try:
        filters = _filters(obj, params)
    except ValueError:
        return _error(400, "Invalid integer: created")
    if filters:
        # Every page of a filtered list asks for the same filter: filter once.
        rows, keys = store.derived(
            "stripe", obj, f"filtered:{filters}",
            lambda _: _filtered(store.derived("stripe", obj, "newest_first", newest_first, optional=obj == "events")[0], filters),
            optional=obj == "events",
        )

    start = 0
    after = params.get("starting_after")
    if after:
        if after not in key_of:
            return _error(400, f"No such object: '{after}'", "invalid_request_error")
        start = bisect.bisect_right(keys, key_of[after])
    page = rows[start : start + limit]
    if version >= CURRENT_VERSION:
        data = store.fragment("stripe", obj, page)  # the stored shape is the current one
    elif obj == "events":
        data = [{**e, "data": {**e["data"], "object": render(e["data"]["object"], version)}} for e in page]
    else:
        data = [render(r, version) for r in page]
    return 200, {
        "object": "list",
        "url": f"/v1/{obj}",
        "has_more": start + limit < len(rows),
        "data": data,
    }
