"""Zendesk-style Support API under `/api/v2`, with basic auth `{email}/token:{api_token}`.

Tickets and users come from the incremental cursor exports (`start_time`, then `cursor`, with
`after_cursor` and `end_of_stream`); the ticket export sideloads each ticket's metric set with
`include=metric_sets`. Organizations come from the time-based export (`start_time`, then
`next_page` until `end_of_stream`). Ticket metrics and satisfaction ratings are also listed with
cursor pagination (`page[size]`, `page[after]`, `meta.has_more`); satisfaction ratings take a
`start_time` filter. Deleted tickets stay in the ticket export with status `deleted`, as on
Zendesk; a deleted organization carries `deleted_at`.
"""

from __future__ import annotations

import base64
import bisect
from datetime import datetime

from sample_company.vendor_api.store import RecordStore

INCREMENTAL = ("tickets", "users")
TIME_BASED = ("organizations",)
PAGED = ("organizations", "ticket_metrics", "satisfaction_ratings")


def authorized(headers, email: str, api_token: str) -> bool:
    expected = base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
    return headers.get("Authorization", "") == f"Basic {expected}"


def _ts(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def _enc(*parts: int) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, parts)).encode()).decode()


def _dec(cursor: str) -> list[int]:
    return [int(p) for p in base64.urlsafe_b64decode(cursor.encode()).decode().split(":")]


def _sorted_by_update(rows: list[dict]) -> tuple[list[tuple[int, int, dict]], list[tuple[int, int]]]:
    ordered = sorted(((_ts(r["updated_at"]), r["id"] or 0, r) for r in rows), key=lambda t: t[:2])
    return ordered, [(t, i) for t, i, _ in ordered]


def _by_update(store: RecordStore, obj: str) -> tuple[list[tuple[int, int, dict]], list[tuple[int, int]]]:
    return store.derived("zendesk", obj, "by_update", _sorted_by_update)


def _metric_sets(store: RecordStore) -> dict[int, dict]:
    return store.derived("zendesk", "ticket_metrics", "by_ticket", lambda rows: {r["ticket_id"]: r for r in rows})


def warm(store: RecordStore, obj: str) -> None:
    """Build the indexes the endpoints serving `obj` page through."""
    if obj in INCREMENTAL or obj in TIME_BASED:
        _by_update(store, obj)
    if obj in PAGED:
        store.derived("zendesk", obj, "by_id", _sorted_by_id)
    if obj == "ticket_metrics":
        _metric_sets(store)


def _error(status: int, error: str, description: str) -> tuple[int, dict]:
    return status, {"error": error, "description": description}


def handle(store: RecordStore, path: str, params: dict[str, str], base_url: str) -> tuple[int, dict]:
    p = path.strip("/").removesuffix(".json")
    parts = p.split("/")
    if parts[:2] != ["api", "v2"]:
        return _error(404, "InvalidEndpoint", "Not found")
    if len(parts) == 5 and parts[2] == "incremental" and parts[4] == "cursor" and parts[3] in INCREMENTAL:
        return _incremental(store, parts[3], params, base_url)
    if len(parts) == 4 and parts[2] == "incremental" and parts[3] in TIME_BASED:
        return _time_based(store, parts[3], params, base_url)
    if len(parts) == 3 and parts[2] in PAGED:
        return _paged(store, parts[2], params, base_url)
    return _error(404, "InvalidEndpoint", "Not found")


def _incremental(store, obj, params, base_url):
    rows, keys = _by_update(store, obj)
    per_page = min(int(params.get("per_page", "1000")), 1000)
    if params.get("cursor"):
        after_ts, after_id = _dec(params["cursor"])
        pos = bisect.bisect_right(keys, (after_ts, after_id))
    elif "start_time" in params:
        pos = bisect.bisect_left(keys, (int(params["start_time"]), -1))
    else:
        return _error(400, "InvalidValue", "start_time or cursor is required")
    page = rows[pos : pos + per_page]
    end = pos + len(page) >= len(rows)
    last = page[-1] if page else None
    if last:
        cursor = _enc(last[0], last[1])
    else:
        cursor = params.get("cursor") or _enc(int(params.get("start_time", 0)) - 1, 2**62)
    body = {
        obj: store.fragment("zendesk", obj, [r for _, _, r in page]),
        "after_cursor": cursor,
        "after_url": f"{base_url}/api/v2/incremental/{obj}/cursor.json?cursor={cursor}",
        "before_cursor": None,
        "end_of_stream": end,
    }
    if obj == "tickets" and "metric_sets" in params.get("include", "").split(","):
        metrics = _metric_sets(store)
        body["metric_sets"] = store.fragment(
            "zendesk", "ticket_metrics", [metrics[r["id"]] for _, _, r in page if r["id"] in metrics]
        )
    return 200, body


def _time_based(store, obj, params, base_url):
    """Zendesk's time-based export: records updated at or after `start_time`, oldest first."""
    if "start_time" not in params:
        return _error(400, "InvalidValue", "start_time is required")
    rows, keys = _by_update(store, obj)
    per_page = min(int(params.get("per_page", "1000")), 1000)
    pos = bisect.bisect_left(keys, (int(params["start_time"]), -1))
    page = rows[pos : pos + per_page]
    end_of_stream = len(page) < per_page
    end_time = page[-1][0] if page else int(params["start_time"])
    return 200, {
        obj: store.fragment("zendesk", obj, [r for _, _, r in page]),
        "count": len(page),
        "end_time": end_time,
        "next_page": f"{base_url}/api/v2/incremental/{obj}.json?per_page={per_page}&start_time={end_time}",
        "end_of_stream": end_of_stream,
    }


def _sorted_by_id(rows: list[dict]) -> tuple[list[dict], list[int]]:
    ordered = sorted(rows, key=lambda r: r["id"] or 0)
    return ordered, [r["id"] or 0 for r in ordered]


def _updated_since(store: RecordStore, obj: str, since: int) -> tuple[list[dict], list[int]]:
    rows, _ = store.derived("zendesk", obj, "by_id", _sorted_by_id)
    rows = [r for r in rows if r.get("updated_at") and _ts(r["updated_at"]) >= since]
    return rows, [r["id"] or 0 for r in rows]


def _paged(store, obj, params, base_url):
    # A record without an id (bad data a vendor can hold) sorts first rather than crashing.
    rows, ids = store.derived("zendesk", obj, "by_id", _sorted_by_id)
    if params.get("start_time") and obj == "satisfaction_ratings":
        since = int(params["start_time"])
        # Every page of a listing asks for the same start time: filter once.
        rows, ids = store.derived("zendesk", obj, f"since:{since}", lambda _: _updated_since(store, obj, since))
    size = min(int(params.get("page[size]", "100")), 100)
    pos = 0
    if params.get("page[after]"):
        (after_id,) = _dec(params["page[after]"])
        pos = bisect.bisect_right(ids, after_id)
    page = rows[pos : pos + size]
    has_more = pos + size < len(rows)
    after = _enc(page[-1]["id"] or 0) if page else None
    return 200, {
        obj: store.fragment("zendesk", obj, page),
        "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": None},
        "links": {"next": f"{base_url}/api/v2/{obj}.json?page[size]={size}&page[after]={after}" if has_more else None},
    }
