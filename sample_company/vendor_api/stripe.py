"""Stripe-style list API: `GET /v1/<objects>` with Bearer auth.

Lists are newest first, paged with `limit` (max 100) and `starting_after=<id>`, filtered with
`created[gt|gte|lt|lte]`; subscriptions exclude canceled ones unless `status=all`, as Stripe does.
"""

from __future__ import annotations

from sample_company.vendor_api.store import RecordStore

OBJECTS = ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")
_ORDERED: dict[str, list[dict]] = {}


def _error(status: int, message: str, type_: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"type": type_, "message": message}}


def authorized(headers, api_key: str) -> bool:
    return headers.get("Authorization", "") == f"Bearer {api_key}"


def handle(store: RecordStore, path: str, params: dict[str, str]) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
    if len(parts) != 2 or parts[0] != "v1" or parts[1] not in OBJECTS:
        return _error(404, f"Unrecognized request URL (GET: /{path.strip('/')}).")
    obj = parts[1]
    try:
        limit = int(params.get("limit", "10"))
    except ValueError:
        return _error(400, "Invalid integer: limit")
    if not 1 <= limit <= 100:
        return _error(400, "limit must be between 1 and 100")

    key = f"{store.sources_dir}:{obj}"
    if key not in _ORDERED:
        _ORDERED[key] = sorted(store.records("stripe", obj), key=lambda r: (-r["created"], r["id"] or ""))
    rows = _ORDERED[key]

    if obj == "subscriptions" and params.get("status", "") != "all":
        wanted = params.get("status")
        rows = [r for r in rows if (r["status"] == wanted if wanted else r["status"] != "canceled")]
    for op, test in (
        ("gt", lambda v, x: v > x),
        ("gte", lambda v, x: v >= x),
        ("lt", lambda v, x: v < x),
        ("lte", lambda v, x: v <= x),
    ):
        bound = params.get(f"created[{op}]")
        if bound is not None:
            rows = [r for r in rows if test(r["created"], int(bound))]

    start = 0
    after = params.get("starting_after")
    if after:
        ids = [r["id"] for r in rows]
        if after not in ids:
            return _error(400, f"No such object: '{after}'", "invalid_request_error")
        start = ids.index(after) + 1
    page = rows[start : start + limit]
    return 200, {
        "object": "list",
        "url": f"/v1/{obj}",
        "has_more": start + limit < len(rows),
        "data": page,
    }
