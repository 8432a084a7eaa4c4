"""HubSpot-style CRM v3 objects API: `GET /crm/v3/objects/<type>` with a private-app token.

Pages of `limit` (max 100) with an opaque `paging.next.after` cursor; only the requested
`properties` are returned (plus HubSpot's defaults), every property value is a string, and
associations come back only when asked for with `associations=`.
"""

from __future__ import annotations

import base64

from sample_company.vendor_api.store import RecordStore

OBJECTS = ("companies", "contacts", "deals")
DEFAULT_PROPERTIES = ("createdate", "hs_lastmodifieddate", "lastmodifieddate", "hs_object_id")


def authorized(headers, token: str) -> bool:
    return headers.get("Authorization", "") == f"Bearer {token}"


def _error(status: int, message: str, category: str) -> tuple[int, dict]:
    return status, {"status": "error", "message": message, "category": category}


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())


def handle(store: RecordStore, path: str, params: dict[str, str], base_url: str) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
    if len(parts) != 4 or parts[:3] != ["crm", "v3", "objects"] or parts[3] not in OBJECTS:
        return _error(404, "Resource not found", "OBJECT_NOT_FOUND")
    obj = parts[3]
    limit = min(int(params.get("limit", "10")), 100)
    try:
        offset = _decode(params["after"]) if params.get("after") else 0
    except ValueError:
        return _error(400, "Invalid paging cursor", "VALIDATION_ERROR")
    archived = params.get("archived", "false") == "true"
    rows = [r for r in store.records("hubspot", obj) if r.get("archived", False) == archived]
    wanted = [p for p in params.get("properties", "").split(",") if p]
    associations = [a for a in params.get("associations", "").split(",") if a]

    results = []
    for r in rows[offset : offset + limit]:
        out = {k: v for k, v in r.items() if k not in ("properties", "associations")}
        props = r["properties"]
        keep = set(wanted) | set(DEFAULT_PROPERTIES) if wanted else set(DEFAULT_PROPERTIES) | {"name", "email", "dealname", "domain", "firstname", "lastname"}
        out["properties"] = {k: (None if v is None else str(v)) for k, v in props.items() if k in keep}
        if associations and "associations" in r:
            out["associations"] = {k: v for k, v in r["associations"].items() if k in associations}
        results.append(out)
    body: dict = {"results": results}
    nxt = offset + limit
    if nxt < len(rows):
        cursor = _encode(nxt)
        body["paging"] = {"next": {"after": cursor, "link": f"{base_url}/crm/v3/objects/{obj}?after={cursor}"}}
    return 200, body
