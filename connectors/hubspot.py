"""HubSpot CRM: companies, contacts and deals from the CRM v3 objects API.

Endpoints  `GET {base_url}/crm/v3/objects/<type>`; `limit=100`, paged with `paging.next.after`.
Auth       private-app token as Bearer (`sources.hubspot.token`).
Write      merge on `id`; an object without an `id` goes to `raw_hubspot.quarantine`.
Shape      HubSpot returns every property as a string inside `properties`; the connector lifts
           the requested properties to top-level columns and leaves typing to dbt staging, so
           a property that changes its look never breaks a load. A deal's company comes from
           its `companies` association.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_resources

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


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Lift `properties` to columns; keep the association to the deal's company."""
    row = {k: v for k, v in record.items() if k not in ("properties", "associations")}
    row.update(record.get("properties") or {})
    companies = ((record.get("associations") or {}).get("companies") or {}).get("results") or []
    if companies:
        row["company_id"] = companies[0]["id"]
    return row


@dlt.source(name="hubspot", max_table_nesting=0)
def hubspot_source(base_url: str = dlt.config.value, token: str = dlt.secrets.value):
    resources = []
    for obj, props in PROPERTIES.items():
        params = {"limit": 100, "properties": ",".join(props), "archived": "false"}
        if obj == "deals":
            params["associations"] = "companies"
        resources.append({
            "name": obj,
            "table_name": quarantine.table_for(obj),
            "endpoint": {"path": f"crm/v3/objects/{obj}", "params": params},
            "processing_steps": [{"map": flatten}, {"map": quarantine.require("hubspot", obj, "id")}],
        })
    yield from rest_api_resources(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "session": retrying_session(),
                "auth": {"type": "bearer", "token": token},
                "paginator": JSONResponseCursorPaginator(cursor_path="paging.next.after", cursor_param="after"),
            },
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {"data_selector": "results"},
            },
            "resources": resources,
        }
    )
