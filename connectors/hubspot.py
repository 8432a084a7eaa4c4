"""HubSpot CRM: companies, contacts and deals from the CRM v3 objects API.

Endpoints  `GET {base_url}/crm/v3/objects/<type>` (`limit=100`, paged with `paging.next.after`;
           `archived=true` for archived records) and
           `POST {base_url}/crm/v3/objects/<type>/search` (filter and sort on the last-modified
           property, 200 per page; search results carry no associations, so a deal's company
           comes from `POST {base_url}/crm/v4/associations/deals/companies/batch/read`).
Auth       private-app token as Bearer (`sources.hubspot.token`).
Increment  `updatedAt` (HubSpot's `hs_lastmodifieddate`; `lastmodifieddate` for contacts). The
           first run lists everything; later runs search for records modified since the
           largest `updatedAt` loaded. Search stops at 10,000 results per query, so a longer
           result is read as several queries, each starting where the last one ended.
Deletes    archived records are listed (HubSpot offers no filter there) and those archived
           since the last run are loaded with `archived = true`, a soft delete that staging
           filters out.
Write      merge on `id`; an object without an `id` goes to `raw_hubspot.quarantine`.
Shape      HubSpot returns every property as a string inside `properties`; the connector lifts
           the requested properties to top-level columns and leaves typing to dbt staging, so
           a property that changes its look never breaks a load. A deal's company comes from
           its `companies` association.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from connectors import quarantine
from connectors.http import retrying_session

PROPERTIES = {
    "companies": [
        "name", "domain", "industry", "hubspot_owner_id", "lifecyclestage", "customer_status",
        "annualrevenue", "stripe_customer_id", "product_workspace_id", "createdate",
        "hs_lastmodifieddate",
    ],
    "contacts": ["email", "firstname", "lastname", "jobtitle", "associatedcompanyid", "createdate", "lastmodifieddate"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "createdate", "hs_lastmodifieddate"],
}
MODIFIED = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}
SEARCH_PAGE = 200
SEARCH_CAP = 10_000
EPOCH = "1970-01-01T00:00:00.000Z"


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Lift `properties` to columns; keep the association to the deal's company."""
    row = {k: v for k, v in record.items() if k not in ("properties", "associations")}
    row.update(record.get("properties") or {})
    companies = ((record.get("associations") or {}).get("companies") or {}).get("results") or []
    if companies:
        row["company_id"] = companies[0]["id"]
    return row


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _list(client: RESTClient, obj: str, archived: bool) -> Iterator[list[dict]]:
    params = {"limit": 100, "properties": ",".join(PROPERTIES[obj]), "archived": str(archived).lower()}
    if obj == "deals":
        params["associations"] = "companies"
    yield from client.paginate(f"crm/v3/objects/{obj}", params=params)


def _search(client: RESTClient, obj: str, since: str) -> Iterator[list[dict]]:
    """Records modified at or after `since`, oldest first, across as many queries as needed."""
    prop = MODIFIED[obj]
    lower, offset = _ms(since), 0
    while True:
        body = {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(lower)}]}],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": PROPERTIES[obj],
            "limit": SEARCH_PAGE,
            "after": offset,
        }
        response = client.post(f"crm/v3/objects/{obj}/search", json=body)
        response.raise_for_status()
        page = response.json()
        results = page.get("results") or []
        yield results
        nxt = ((page.get("paging") or {}).get("next") or {}).get("after")
        if not nxt:
            return
        offset = int(nxt)
        if offset + SEARCH_PAGE > SEARCH_CAP:
            # Start a new query at the last modification time read; records of that same
            # instant come again and are de-duplicated by the incremental cursor.
            newest = _ms(results[-1]["properties"][prop])
            if newest == lower:
                raise RuntimeError(f"hubspot: more than {SEARCH_CAP} {obj} modified at the same instant")
            lower, offset = newest, 0


def _with_companies(client: RESTClient, deals: list[dict]) -> list[dict]:
    """Attach each deal's company association, which search results leave out."""
    ids = [d["id"] for d in deals if d.get("id")]
    if not ids:
        return deals
    response = client.post("crm/v4/associations/deals/companies/batch/read", json={"inputs": [{"id": i} for i in ids]})
    response.raise_for_status()
    company = {r["from"]["id"]: r["to"][0]["toObjectId"] for r in response.json().get("results") or [] if r.get("to")}
    for deal in deals:
        if deal.get("id") in company:
            deal["associations"] = {"companies": {"results": [{"id": str(company[deal["id"]]), "type": "deal_to_company"}]}}
    return deals


def _resource(obj: str, client: RESTClient):
    @dlt.resource(name=obj, table_name=quarantine.table_for(obj), primary_key="id", write_disposition="merge")
    def objects(
        updated_at=dlt.sources.incremental("updatedAt", initial_value=EPOCH, on_cursor_value_missing="include"),
    ) -> Iterator[list[dict[str, Any]]]:
        since = updated_at.last_value
        first_run = since == EPOCH
        live = _list(client, obj, archived=False) if first_run else _search(client, obj, since)
        for page in live:
            if obj == "deals" and not first_run:
                page = _with_companies(client, page)
            yield [_prepare(obj, r) for r in page]
        # Incremental filtering keeps only records archived since the last run.
        for page in _list(client, obj, archived=True):
            yield [_prepare(obj, r) for r in page]

    return objects


def _prepare(obj: str, record: dict[str, Any]) -> dict[str, Any]:
    return quarantine.require("hubspot", obj, "id")(flatten(record))


@dlt.source(name="hubspot", max_table_nesting=0)
def hubspot_source(base_url: str = dlt.config.value, token: str = dlt.secrets.value):
    client = RESTClient(
        base_url=base_url.rstrip("/") + "/",
        auth=BearerTokenAuth(token),
        session=retrying_session(),
        paginator=JSONResponseCursorPaginator(cursor_path="paging.next.after", cursor_param="after"),
        data_selector="results",
    )
    return [_resource(obj, client) for obj in PROPERTIES]
