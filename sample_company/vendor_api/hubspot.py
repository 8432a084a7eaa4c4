"""HubSpot-style CRM v3 objects API with a private-app token.

`GET /crm/v3/objects/<type>` lists objects in pages of `limit` (max 100) with an opaque
`paging.next.after` cursor; `archived=true` lists the archived ones (with `archivedAt`).
`POST /crm/v3/objects/<type>/search` filters and sorts by properties (dates compare as epoch
milliseconds), pages of up to 200 with `after` in the body, and stops at 10,000 results per
query, as HubSpot does; search results carry no associations, which come from
`POST /crm/v4/associations/<from>/<to>/batch/read` instead. Only the requested `properties`
come back (plus HubSpot's defaults), every property value is a string, and associations come back only when asked for.

`GET /crm/v3/objects/<type>/<id>` reads one object (`idProperty=email` finds a contact by
email; an archived one only with `archived=true`), 404 when there is none.
`POST /crm/v3/objects/contacts/gdpr-delete` with `{"objectId": ..., "idProperty": "email"}`
(`idProperty` optional: without it `objectId` is the contact's id) deletes a contact for good,
as HubSpot documents its GDPR deletion: 204, and the contact is in neither listing (listed or
archived), nor found by id or search, and no other object's associations name it any more. An
email no contact has answers 204 too (HubSpot then blocklists the address; the stand-in keeps
no such list, since that would be keeping the address); an id no contact has answers 404.
"""

from __future__ import annotations

import base64
from array import array
from datetime import datetime

import orjson

from sample_company.vendor_api.store import RecordStore, Table, Write

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
    if len(parts) == 5 and parts[:3] == ["crm", "v3", "objects"] and parts[3] in OBJECTS and body is None:
        return _read(store, parts[3], parts[4], params)
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


def _by_id(store: RecordStore, t: Table) -> dict[str, int]:
    return store.derived(t, "by_id", lambda t: {i: p for p, i in enumerate(t.columns["id"]) if i})


def _find(store: RecordStore, t: Table, object_id: str, id_property: str | None) -> int | None:
    """The position of the object `object_id` names: its id, or (`idProperty=email`) the
    contact with that email, whatever its case."""
    if id_property in (None, "", "hs_object_id"):
        return _by_id(store, t).get(str(object_id))
    wanted = str(object_id).strip().lower()
    needle = wanted.encode()
    for position in range(len(t)):
        raw = t.raw(position)
        # Most lines cannot hold the address: parse only those that might.
        if needle in raw.lower():
            email = (orjson.loads(raw).get("properties") or {}).get("email")
            if isinstance(email, str) and email.strip().lower() == wanted:
                return position
    return None


def _read(store: RecordStore, obj: str, object_id: str, params: dict[str, str]) -> tuple[int, dict]:
    id_property = params.get("idProperty") or None
    if id_property not in (None, "hs_object_id") and not (obj == "contacts" and id_property == "email"):
        return _error(400, f"Property {id_property} is not a unique identifier property", "VALIDATION_ERROR")
    t = table(store, obj)
    position = _find(store, t, object_id, id_property)
    archived = params.get("archived", "false") == "true"
    if position is None or t.columns["archived"][position] != archived:
        return _error(404, "resource not found", "OBJECT_NOT_FOUND")
    wanted = [p for p in params.get("properties", "").split(",") if p]
    associations = [a for a in params.get("associations", "").split(",") if a]
    return 200, _shaper(wanted, associations)(t.record(position))


def write(store: RecordStore, method: str, path: str, body: dict | None) -> Write | None:
    """A request that changes records, answered; None for any other request."""
    parts = path.strip("/").split("/")
    if parts != ["crm", "v3", "objects", "contacts", "gdpr-delete"]:
        return None
    if method != "POST":
        return Write(*_error(405, "GDPR deletion takes POST with a JSON body", "VALIDATION_ERROR"))
    if not isinstance(body, dict):
        return Write(*_error(400, "The body must be a JSON object", "VALIDATION_ERROR"))
    return gdpr_delete(store, body)


def gdpr_delete(store: RecordStore, body: dict) -> Write:
    """Delete a contact for good, with every association naming it (HubSpot's GDPR deletion)."""
    object_id, id_property = body.get("objectId"), body.get("idProperty") or None
    if object_id in (None, ""):
        return Write(*_error(400, "objectId is required", "VALIDATION_ERROR"))
    by_email = id_property == "email"
    if id_property not in (None, "hs_object_id") and not by_email:
        return Write(*_error(400, f"Property {id_property} is not a unique identifier property", "VALIDATION_ERROR"))
    with store.writing:
        t = table(store, "contacts")
        position = _find(store, t, str(object_id), id_property)
        if position is None:
            # An unknown address is blocklisted by HubSpot, and answered as done.
            return Write(204, None) if by_email else Write(*_error(404, "resource not found", "OBJECT_NOT_FOUND"))
        contact_id = str(t.columns["id"][position])
        needle = orjson.dumps(contact_id)
        # Every line of the contact goes (a file may hold one twice).
        store.rewrite(
            "hubspot",
            "contacts",
            lambda line: None if needle in line and str(orjson.loads(line).get("id")) == contact_id else line,
        )
        for other in OBJECTS:
            if other != "contacts" and store.path("hubspot", other).exists():
                store.rewrite("hubspot", other, lambda line: _unlinked(line, contact_id) if needle in line else line)
    return Write(204, None, contact_id)


def _unlinked(line: bytes, contact_id: str) -> bytes:
    """The record without its associations to the contact (the line itself if it has none)."""
    record = orjson.loads(line)
    linked = (record.get("associations") or {}).get("contacts")
    results = (linked or {}).get("results") or []
    kept = [a for a in results if str(a.get("id")) != contact_id]
    if len(kept) == len(results):
        return line
    if kept:
        linked["results"] = kept
    else:
        del record["associations"]["contacts"]
        if not record["associations"]:
            del record["associations"]
    return orjson.dumps(record)


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
    by_id = _by_id(store, t)
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
