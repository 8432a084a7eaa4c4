"""Stripe billing: customers, products, prices, subscriptions (with items), invoices, charges, refunds.

Endpoints  `GET {base_url}/v1/<object>`; newest first, `limit=100`, paged with `starting_after`.
Auth       Bearer secret key (`sources.stripe.api_key`).
Write      merge on `id`, so a re-read never duplicates and changes (a cancellation) land.
Contract   an object without an `id` goes to `raw_stripe.quarantine` with the reason.
Nesting    subscription items become the child table `subscriptions__items__data`, with the
           price flattened into `price__*` columns; other nested objects become `parent__child`
           columns.
Shapes     Since API version 2025-03-31 the invoice's subscription moved under
           `parent.subscription_details`; both shapes are accepted and normalised into one
           `subscription` column.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_resources

from connectors import quarantine
from connectors.http import retrying_session

OBJECTS = ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")


def normalise_invoice(invoice: dict[str, Any]) -> dict[str, Any]:
    """Put the invoice's subscription id in one place whatever the API version."""
    parent = invoice.get("parent") or {}
    from_parent = (parent.get("subscription_details") or {}).get("subscription")
    invoice["subscription"] = invoice.get("subscription") or from_parent
    return invoice


@dlt.source(name="stripe", max_table_nesting=2)
def stripe_source(
    base_url: str = dlt.config.value,
    api_key: str = dlt.secrets.value,
    objects: tuple[str, ...] = OBJECTS,
):
    resources = []
    for obj in objects:
        steps = [{"map": normalise_invoice}] if obj == "invoices" else []
        steps.append({"map": quarantine.require("stripe", obj, "id")})
        resource: dict[str, Any] = {
            "name": obj,
            "table_name": quarantine.table_for(obj),
            "endpoint": {"path": f"v1/{obj}"},
            "processing_steps": steps,
        }
        if obj == "subscriptions":
            # Stripe leaves canceled subscriptions out of lists unless asked for them.
            resource["endpoint"]["params"] = {"status": "all", "limit": 100}
        resources.append(resource)
    yield from rest_api_resources(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "session": retrying_session(),
                "auth": {"type": "bearer", "token": api_key},
                "paginator": JSONResponseCursorPaginator(
                    cursor_path="data[-1].id", cursor_param="starting_after", has_more_path="has_more"
                ),
            },
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {"data_selector": "data", "params": {"limit": 100}},
            },
            "resources": resources,
        }
    )
