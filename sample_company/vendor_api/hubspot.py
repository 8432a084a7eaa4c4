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
from datetime import datetime

import orjson

from sample_company.vendor_api.store import RecordStore, compact

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


def split(rows: list[dict]) -> dict[bool, list[dict]]:
    return {flag: [r for r in rows if bool(r.get("archived", False)) == flag] for flag in (False, True)}


def _shape(r: dict, wanted: list[str], associations: list[str]) -> dict:
    out = {k: v for k, v in r.items() if k not in ("properties", "associations")}
    keep = (
        set(wanted) | set(DEFAULT_PROPERTIES)
        if wanted
        else set(DEFAULT_PROPERTIES) | {"name", "email", "dealname", "domain", "firstname", "lastname"}
    )
    out["properties"] = {k: (None if v is None else str(v)) for k, v in r["properties"].items() if k in keep}
    if associations and "associations" in r:
        out["associations"] = {k: v for k, v in r["associations"].items() if k in associations}
    return out


def _pair(key: str, value) -> bytes:
    return orjson.dumps(key) + b":" + orjson.dumps(value)


def _pieces(rows: list[dict]) -> dict[bool, list[tuple[bytes, dict[str, bytes], dict[str, bytes]]]]:
    """Per record (listed or archived), its serialization in the pieces any page is put
    together from: the fields besides properties and associations (without the closing
    brace), each property as `"name":"value"`, each association the same way."""

    def pieces(r: dict):
        head = orjson.dumps({k: v for k, v in r.items() if k not in ("properties", "associations")})[:-1]
        props = {k: _pair(k, None if v is None else str(v)) for k, v in r["properties"].items()}
        links = {k: _pair(k, v) for k, v in (r.get("associations") or {}).items()}
        return compact(head), props, links

    return {flag: [pieces(r) for r in listed] for flag, listed in split(rows).items()}


def _shaped(
    store: RecordStore, obj: str, archived: bool, wanted: list[str], associations: list[str], offset: int, limit: int
) -> orjson.Fragment:
    """A page of records with the requested properties and associations, put together from
    each record's stored pieces (the same bytes `_shape` would serialize)."""
    keep = (
        set(wanted) | set(DEFAULT_PROPERTIES)
        if wanted
        else set(DEFAULT_PROPERTIES) | {"name", "email", "dealname", "domain", "firstname", "lastname"}
    )
    records = []
    for head, props, links in store.derived("hubspot", obj, "pieces", _pieces)[archived][offset : offset + limit]:
        parts = [head, b',"properties":{', b",".join([v for k, v in props.items() if k in keep]), b"}"]
        chosen = [v for k, v in links.items() if k in associations]
        if chosen:
            parts += [b',"associations":{', b",".join(chosen), b"}"]
        parts.append(b"}")
        records.append(b"".join(parts))
    return orjson.Fragment(b"[" + b",".join(records) + b"]")


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
    rows = store.derived("hubspot", obj, "by_archived", split)[archived]
    wanted = [p for p in params.get("properties", "").split(",") if p]
    associations = [a for a in params.get("associations", "").split(",") if a]

    out: dict = {"results": _shaped(store, obj, archived, wanted, associations, offset, limit)}
    nxt = offset + limit
    if nxt < len(rows):
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

    rows = store.derived(
        "hubspot",
        obj,
        "search:" + orjson.dumps([body.get("filterGroups"), body.get("sorts")]).decode(),
        lambda _: _matching(store, obj, body),
    )
    page = rows[offset : offset + limit]
    out: dict = {"total": len(rows), "results": [_shape(r, body.get("properties") or [], []) for r in page]}
    if offset + limit < len(rows):
        out["paging"] = {"next": {"after": str(offset + limit)}}
    return 200, out


def _matching(store: RecordStore, obj: str, body: dict) -> list[dict]:
    """The records a search matches, in its order (every page of one query asks the same)."""

    def matches(r: dict) -> bool:
        groups = body.get("filterGroups") or [{"filters": []}]
        return any(all(_test(r, f) for f in g.get("filters", [])) for g in groups)

    rows = [r for r in store.derived("hubspot", obj, "by_archived", split)[False] if matches(r)]
    for sort in reversed(body.get("sorts") or []):
        prop = sort if isinstance(sort, str) else sort.get("propertyName")
        descending = not isinstance(sort, str) and sort.get("direction") == "DESCENDING"
        rows.sort(key=lambda r: (_value(r, prop) is None, _value(r, prop) or 0, r["id"]), reverse=descending)
    return rows


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows if r.get("id")}


def _associations(store: RecordStore, from_obj: str, to_obj: str, body: dict) -> tuple[int, dict]:
    if from_obj not in OBJECTS or to_obj not in OBJECTS:
        return _error(404, "Resource not found", "OBJECT_NOT_FOUND")
    records = store.derived("hubspot", from_obj, "by_id", _by_id)
    results = []
    for entry in body.get("inputs") or []:
        record = records.get(str(entry.get("id")))
        linked = (((record or {}).get("associations") or {}).get(to_obj) or {}).get("results") or []
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
