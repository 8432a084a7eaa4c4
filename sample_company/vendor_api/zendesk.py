"""Zendesk-style Support API under `/api/v2`, with basic auth `{email}/token:{api_token}`.

Tickets and users come from the incremental cursor exports (`start_time`, then `cursor`, with
`after_cursor` and `end_of_stream`); the ticket export sideloads each ticket's metric set with
`include=metric_sets`. Organizations come from the time-based export (`start_time`, then
`next_page` until `end_of_stream`). Ticket metrics and satisfaction ratings are also listed with
cursor pagination (`page[size]`, `page[after]`, `meta.has_more`); satisfaction ratings take a
`start_time` filter. Deleted tickets stay in the ticket export with status `deleted`, as on
Zendesk; a deleted organization carries `deleted_at`.

Users are deleted in Zendesk's two steps. `DELETE /api/v2/users/{user_id}` soft-deletes one:
200 with the user, now `active: false` (and updated, so the export brings it again); a user
already soft-deleted answers the same. `DELETE /api/v2/deleted_users/{deleted_user_id}` (the
same id) then deletes a soft-deleted user for good: 200 with the `deleted_user`, 404 for a
user not soft-deleted first. As Zendesk shows permanently deleted users, the user stays in
the export as a placeholder without personal data: every field but its id, role, locale and
creation time null, `name` "Permanently Deleted User", `active: false`, updated at the deletion
(so an incremental export brings the erasure too); both deletions then answer 404. Tickets and
satisfaction ratings keep naming the user by `requester_id`, as Zendesk keeps closed tickets.
`GET /api/v2/deleted_users/{deleted_user_id}` shows a soft-deleted user, 404 for any other.
Zendesk does not let an end user who requested a ticket not yet closed be deleted; the
stand-in deletes them all the same (how Zendesk's API words that refusal is not documented).
"""

from __future__ import annotations

import base64
import bisect
import time
from array import array
from datetime import datetime

import orjson

from sample_company.vendor_api.store import RecordStore, Table, Write

INCREMENTAL = ("tickets", "users")
TIME_BASED = ("organizations",)
PAGED = ("organizations", "ticket_metrics", "satisfaction_ratings")
# What Zendesk shows of a permanently deleted user: its name is this, and of its other fields
# only these keep their values.
PERMANENTLY_DELETED = "Permanently Deleted User"
KEPT_WHEN_DELETED = frozenset({"id", "url", "role", "role_type", "locale", "locale_id", "created_at"})
NOT_FOUND = (404, {"error": "RecordNotFound", "description": "Not found"})


def authorized(headers, email: str, api_token: str) -> bool:
    expected = base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
    return headers.get("Authorization", "") == f"Basic {expected}"


def _ts(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def _enc(*parts: int) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, parts)).encode()).decode()


def _dec(cursor: str) -> list[int]:
    return [int(p) for p in base64.urlsafe_b64decode(cursor.encode()).decode().split(":")]


# What a table keeps of each Zendesk record: exports page by `updated_at` and `id`, lists by
# `id`, and a ticket finds its metric set by the set's `ticket_id`.
FIELDS = ("id", "updated", "ticket_id")


def _updated(record: dict) -> int | None:
    value = record.get("updated_at")
    try:
        return _ts(value) if value else None
    except (TypeError, ValueError, AttributeError):  # not an ISO 8601 string: sorts first
        return None


def _fields(obj: str, record: dict) -> tuple:
    return record.get("id"), _updated(record), record.get("ticket_id") if obj == "ticket_metrics" else None


def table(store: RecordStore, obj: str) -> Table:
    return store.table("zendesk", obj, FIELDS, _fields)


def _update_key(t: Table):
    """A position's place in an export: (updated, id); a record without either sorts first."""
    updated, ids = t.columns["updated"], t.columns["id"]
    return lambda p: (updated[p] or 0, ids[p] or 0)


def _sorted_by_update(t: Table) -> array:
    return array("q", sorted(range(len(t)), key=_update_key(t)))


def _by_update(store: RecordStore, t: Table) -> array:
    return store.derived(t, "by_update", _sorted_by_update)


def _metric_sets(store: RecordStore) -> tuple[Table, dict[int, int]]:
    """The metric sets' table, and each ticket's metric set's position in it."""
    metrics = table(store, "ticket_metrics")
    return metrics, store.derived(
        metrics, "by_ticket", lambda t: {ticket: p for p, ticket in enumerate(t.columns["ticket_id"])}
    )


def warm(store: RecordStore, obj: str) -> None:
    """Build the indexes the endpoints serving `obj` page through."""
    t = table(store, obj)
    if obj in INCREMENTAL or obj in TIME_BASED:
        _by_update(store, t)
    if obj in PAGED:
        store.derived(t, "by_id", _sorted_by_id)
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
    if len(parts) == 4 and parts[2] == "deleted_users":
        found = _user(store, parts[3])
        if found is None or not _soft_deleted(found[1]):
            return NOT_FOUND
        return 200, {"deleted_user": found[1]}
    return _error(404, "InvalidEndpoint", "Not found")


def _soft_deleted(user: dict) -> bool:
    return user.get("active") is False and not _permanently_deleted(user)


def _permanently_deleted(user: dict) -> bool:
    return user.get("active") is False and user.get("name") == PERMANENTLY_DELETED and user.get("email") is None


def _user(store: RecordStore, user_id: str) -> tuple[int, dict] | None:
    """The user of that id and its id as stored; None for an id no user has."""
    try:
        wanted = int(user_id)
    except ValueError:
        return None
    t = table(store, "users")
    by_id = store.derived(t, "by_id_lookup", lambda t: {i: p for p, i in enumerate(t.columns["id"]) if i is not None})
    position = by_id.get(wanted)
    return None if position is None else (wanted, t.record(position))


def write(store: RecordStore, method: str, path: str, body: dict | None) -> Write | None:
    """A request that changes records, answered; None for any other request."""
    parts = path.strip("/").removesuffix(".json").split("/")
    if method != "DELETE" or len(parts) != 4 or parts[:2] != ["api", "v2"]:
        return None
    if parts[2] == "users":
        return delete_user(store, parts[3])
    if parts[2] == "deleted_users":
        return permanently_delete_user(store, parts[3])
    return None


def delete_user(store: RecordStore, user_id: str) -> Write:
    """Soft-delete a user: `active` false, updated now."""
    with store.writing:
        found = _user(store, user_id)
        if found is None or _permanently_deleted(found[1]):
            return Write(*NOT_FOUND, None if found is None else str(found[0]))
        wanted, user = found
        if user.get("active") is not False:
            user = {**user, "active": False, "updated_at": _now()}
            _replace_user(store, wanted, user)
    return Write(200, {"user": user}, str(wanted))


def permanently_delete_user(store: RecordStore, user_id: str) -> Write:
    """Delete a soft-deleted user for good: what stays is a placeholder without personal data."""
    with store.writing:
        found = _user(store, user_id)
        if found is None or not _soft_deleted(found[1]):
            return Write(*NOT_FOUND, None if found is None else str(found[0]))
        wanted, user = found
        placeholder = {key: value if key in KEPT_WHEN_DELETED else None for key, value in user.items()}
        placeholder.update(name=PERMANENTLY_DELETED, email=None, active=False, updated_at=_now())
        _replace_user(store, wanted, placeholder)
    return Write(200, {"deleted_user": placeholder}, str(wanted))


def _replace_user(store: RecordStore, user_id: int, user: dict) -> None:
    """Write `user` over every line of that id in the users' file."""
    needle, line = str(user_id).encode(), orjson.dumps(user)
    store.rewrite(
        "zendesk", "users", lambda raw: line if needle in raw and orjson.loads(raw).get("id") == user_id else raw
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _incremental(store, obj, params, base_url):
    t = table(store, obj)
    order = _by_update(store, t)
    key = _update_key(t)
    per_page = min(int(params.get("per_page", "1000")), 1000)
    if params.get("cursor"):
        after_ts, after_id = _dec(params["cursor"])
        pos = bisect.bisect_right(order, (after_ts, after_id), key=key)
    elif "start_time" in params:
        pos = bisect.bisect_left(order, (int(params["start_time"]), -1), key=key)
    else:
        return _error(400, "InvalidValue", "start_time or cursor is required")
    page = order[pos : pos + per_page]
    end = pos + len(page) >= len(order)
    if page:
        cursor = _enc(*key(page[-1]))
    else:
        cursor = params.get("cursor") or _enc(int(params.get("start_time", 0)) - 1, 2**62)
    body = {
        obj: t.fragment(page),
        "after_cursor": cursor,
        "after_url": f"{base_url}/api/v2/incremental/{obj}/cursor.json?cursor={cursor}",
        "before_cursor": None,
        "end_of_stream": end,
    }
    if obj == "tickets" and "metric_sets" in params.get("include", "").split(","):
        metrics, by_ticket = _metric_sets(store)
        ids = t.columns["id"]
        body["metric_sets"] = metrics.fragment([by_ticket[ids[p]] for p in page if ids[p] in by_ticket])
    return 200, body


def _time_based(store, obj, params, base_url):
    """Zendesk's time-based export: records updated at or after `start_time`, oldest first."""
    if "start_time" not in params:
        return _error(400, "InvalidValue", "start_time is required")
    t = table(store, obj)
    order = _by_update(store, t)
    key = _update_key(t)
    per_page = min(int(params.get("per_page", "1000")), 1000)
    pos = bisect.bisect_left(order, (int(params["start_time"]), -1), key=key)
    page = order[pos : pos + per_page]
    end_of_stream = len(page) < per_page
    end_time = key(page[-1])[0] if page else int(params["start_time"])
    return 200, {
        obj: t.fragment(page),
        "count": len(page),
        "end_time": end_time,
        "next_page": f"{base_url}/api/v2/incremental/{obj}.json?per_page={per_page}&start_time={end_time}",
        "end_of_stream": end_of_stream,
    }


def _sorted_by_id(t: Table) -> array:
    # A record without an id (bad data a vendor can hold) sorts first rather than crashing.
    ids = t.columns["id"]
    return array("q", sorted(range(len(t)), key=lambda p: ids[p] or 0))


def _updated_since(t: Table, order: array, since: int) -> array:
    updated = t.columns["updated"]
    return array("q", (p for p in order if updated[p] is not None and updated[p] >= since))


def _paged(store, obj, params, base_url):
    t = table(store, obj)
    ids = t.columns["id"]
    order = store.derived(t, "by_id", _sorted_by_id)
    if params.get("start_time") and obj == "satisfaction_ratings":
        since = int(params["start_time"])
        # Every page of a listing asks for the same start time: filter once.
        order = store.derived(t, f"since:{since}", lambda _: _updated_since(t, order, since))
    size = min(int(params.get("page[size]", "100")), 100)
    pos = 0
    if params.get("page[after]"):
        (after_id,) = _dec(params["page[after]"])
        pos = bisect.bisect_right(order, after_id, key=lambda p: ids[p] or 0)
    page = order[pos : pos + size]
    has_more = pos + size < len(order)
    after = _enc(ids[page[-1]] or 0) if page else None
    return 200, {
        obj: t.fragment(page),
        "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": None},
        "links": {"next": f"{base_url}/api/v2/{obj}.json?page[size]={size}&page[after]={after}" if has_more else None},
    }
