"""HubSpot-style CRM v3 objects API with a private-app token.

`GET /crm/v3/objects/<type>` lists objects in pages of `limit` (max 100) with an opaque
`paging.next.after` cursor; `archived=true` lists the archived ones (with `archivedAt`).
`POST /crm/v3/objects/<type>/search` filters and sorts by properties (dates compare as epoch
milliseconds), pages of up to 200 with `after` in the body, and stops at 10,000 results per
query, as HubSpot does; search results carry no associations, which come from
`POST /crm/v4/associations/<from>/<to>/batch/read` instead. Only the requested `properties`
come back (plus HubSpot's defaults), every property value is a string, and associations come back only when asked for.
"""

from __future__ import annotations

import base64
from array import array
from datetime import datetime

import orjson

from sample_company.vendor_api.store import RecordStore, Table

OBJECTS = ("companies", "contacts", "deals")
DEFAULT_PROPERTIES = ("createdate", "hs_lastmodifieddate", "lastmodifieddate", "hs_object_id")
DATE_PROPERTIES = {"createdate", "hs_lastmodifieddate", "lastmodifieddate", "closedate"}
SEARCH_LIMIT = 10_000
OPERATORS = {
    "EQ": lambda v, x: v == x,
    "NEQ": lambda v, x: v != x,
    "GT": lambda v, x: v is not None and v > x,
    "GTE": lambda v, x: v is not None and v >= x,
    "LT": lambda v, x: v is not None and v < x,
    "LTE": lambda v, x: v is not None and v <= x,
}


def authorized(headers, token: str) -> bool:
    return headers.get("Authorization", "") == f"Bearer {token}"


def _error(status: int, message: str, category: str) -> tuple[int, dict]:
    return status, {"status": "error", "message": message, "category": category}


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())


def _epoch_ms(value) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) or str(value).isdigit():
        return int(value)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


# What a table keeps of each HubSpot record: lists are of the listed or the archived records,
# and associations are read by id.
FIELDS = ("id", "archived")


def _fields(obj: str, record: dict) -> tuple:
    return record.get("id"), bool(record.get("archived", False))


def table(store: RecordStore, obj: str) -> Table:
    return store.table("hubspot", obj, FIELDS, _fields)


def split(t: Table) -> dict[bool, array]:
    """The positions of the listed (`False`) and the archived (`True`) records, in file order."""
    archived = t.columns["archived"]
    return {flag: array("q", (p for p, a in enumerate(archived) if a == flag)) for flag in (False, True)}


def _shaper(wanted: list[str], associations: list[str]):
    """What shapes a freshly read record (in place) to what a request asked for: the requested
    properties (or HubSpot's defaults), each value a string, and the requested associations."""
    keep = frozenset(
        set(wanted) | set(DEFAULT_PROPERTIES)
        if wanted
        else set(DEFAULT_PROPERTIES) | {"name", "email", "dealname", "domain", "firstname", "lastname"}
    )
    linked = frozenset(associations)

    def shape(r: dict) -> dict:
        properties = r.pop("properties", None) or {}
        links = r.pop("associations", None)
        r["properties"] = {
            k: v if v is None or v.__class__ is str else str(v) for k, v in properties.items() if k in keep
        }
        chosen = {k: v for k, v in links.items() if k in linked} if links and linked else None
        if chosen:
            r["associations"] = chosen
        return r

    return shape


def handle(
    store: RecordStore, path: str, params: dict[str, str], base_url: str, body: dict | None = None
) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
    if len(parts) == 7 and parts[:3] == ["crm", "v4", "associations"] and parts[5:] == ["batch", "read"]:
        if body is None:
            return _error(405, "Batch read takes POST with a JSON body", "VALIDATION_ERROR")
        return _associations(store, parts[3], parts[4], body)
    if len(parts) == 5 and parts[:3] == ["crm", "v3", "objects"] and parts[3] in OBJECTS and parts[4] == "search":
        if body is None:
            return _error(405, "Search takes POST with a JSON body", "VALIDATION_ERROR")
        return _search(store, parts[3], body)
    if len(parts) != 4 or parts[:3] != ["crm", "v3", "objects"] or parts[3] not in OBJECTS:
        return _error(404, "Resource not found", "OBJECT_NOT_FOUND")
    obj = parts[3]
    limit = min(int(params.get("limit", "10")), 100)
    try:
        offset = _decode(params["after"]) if params.get("after") else 0
    except ValueError:
        return _error(400, "Invalid paging cursor", "VALIDATION_ERROR")
    archived = params.get("archived", "false") == "true"
    t = table(store, obj)
    listed = store.derived(t, "by_archived", split)[archived]
    wanted = [p for p in params.get("properties", "").split(",") if p]
    associations = [a for a in params.get("associations", "").split(",") if a]

    shape = _shaper(wanted, associations)
    out: dict = {"results": [shape(r) for r in t.records(listed[offset : offset + limit])]}
    nxt = offset + limit
    if nxt < len(listed):
        cursor = _encode(nxt)
        out["paging"] = {"next": {"after": cursor, "link": f"{base_url}/crm/v3/objects/{obj}?after={cursor}"}}
    return 200, out


def _search(store: RecordStore, obj: str, body: dict) -> tuple[int, dict]:
    limit = min(int(body.get("limit", 10)), 200)
    offset = int(body.get("after") or 0)
    if offset + limit > SEARCH_LIMIT:
        return _error(
            400, f"Search results are limited to {SEARCH_LIMIT} per query; narrow the filter", "VALIDATION_ERROR"
        )

    t = table(store, obj)
    found = store.derived(
        t,
        "search:" + orjson.dumps([body.get("filterGroups"), body.get("sorts")]).decode(),
        lambda _: _matching(store, t, body),
    )
    page = t.records(found[offset : offset + limit])
    shape = _shaper(body.get("properties") or [], [])
    out: dict = {"total": len(found), "results": [shape(r) for r in page]}
    if offset + limit < len(found):
        out["paging"] = {"next": {"after": str(offset + limit)}}
    return 200, out


def _matching(store: RecordStore, t: Table, body: dict) -> array:
    """The positions of the records a search matches, in its order (every page of one query
    asks the same)."""

    def matches(r: dict) -> bool:
        groups = body.get("filterGroups") or [{"filters": []}]
        return any(all(_test(r, f) for f in g.get("filters", [])) for g in groups)

    listed = store.derived(t, "by_archived", split)[False]
    found = [(p, r) for p, r in zip(listed, t.records(listed)) if matches(r)]
    for sort in reversed(body.get("sorts") or []):
        prop = sort if isinstance(sort, str) else sort.get("propertyName")
        descending = not isinstance(sort, str) and sort.get("direction") == "DESCENDING"
        found.sort(
            key=lambda pr: (_value(pr[1], prop) is None, _value(pr[1], prop) or 0, pr[1]["id"]), reverse=descending
        )
    return array("q", (p for p, _ in found))


def _associations(store: RecordStore, from_obj: str, to_obj: str, body: dict) -> tuple[int, dict]:
    if from_obj not in OBJECTS or to_obj not in OBJECTS:
        return _error(404, "Resource not found", "OBJECT_NOT_FOUND")
    t = table(store, from_obj)
    by_id = store.derived(t, "by_id", lambda t: {i: p for p, i in enumerate(t.columns["id"]) if i})
    results = []
    for entry in body.get("inputs") or []:
        position = by_id.get(str(entry.get("id")))
        record = t.record(position) if position is not None else {}
        linked = ((record.get("associations") or {}).get(to_obj) or {}).get("results") or []
        if linked:
            results.append(
                {
                    "from": {"id": record["id"]},
                    "to": [
                        {
                            "toObjectId": int(a["id"]),
                            "associationTypes": [{"category": "HUBSPOT_DEFINED", "label": None}],
                        }
                        for a in linked
                    ],
                }
            )
    return 200, {"status": "COMPLETE", "results": results}


def _value(r: dict, prop: str):
    raw = r["properties"].get(prop)
    return _epoch_ms(raw) if prop in DATE_PROPERTIES else raw


def _test(r: dict, f: dict) -> bool:
    prop, op = f.get("propertyName"), f.get("operator", "EQ")
    value = _value(r, prop)
    wanted = _epoch_ms(f.get("value")) if prop in DATE_PROPERTIES else f.get("value")
    return OPERATORS[op](value, wanted)
