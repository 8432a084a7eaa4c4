"""Stripe billing: customers, products, prices, subscriptions (with items), invoices, charges, refunds.

Endpoints  `GET {base_url}/v1/<object>` (newest first, `limit=100`, paged with `starting_after`)
           and `GET {base_url}/v1/events` (`type=<prefix>.*`, `created[gte]`).
Auth       Bearer secret key (`sources.stripe.api_key`); `sources.stripe.api_version` pins a
           `Stripe-Version` (default: the account's own).
Increment  Stripe lists filter only on `created`, so changes come from events, as Stripe
           recommends: the first run lists every object and notes the newest event; later runs
           read only the events since then and load the object each one carries (the newest
           per object wins). Stripe keeps events for 30 days: a pipeline idle for longer misses
           changes and must be reloaded in full (drop the `raw_stripe` schema, run again).
Deletes    a `*.deleted` event (customer, product, price, invoice) keeps the row with
           `deleted = true`, a soft delete that staging filters out; a canceled subscription is
           an update (status `canceled`).
Write      merge on `id`, so a re-read never duplicates and the latest state wins.
Contract   an object without an `id` goes to `raw_stripe.quarantine` with the reason; other
           columns evolve (a new field becomes a new column).
Nesting    subscription items become the child table `subscriptions__items__data`, with the
           price flattened into `price__*` columns; other nested objects become `parent__child`
           columns.
Shapes     API version 2025-03-31 moved the current period from the subscription to its items
           and the invoice's subscription under `parent.subscription_details`; both shapes
           are accepted: periods always land on the items, and the invoice's subscription id
           in one `subscription` column.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from connectors import quarantine
from connectors.http import retrying_session

OBJECTS = ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")
# The event types that carry each object (`type` takes a `prefix.*` wildcard) and the object
# name the event's `data.object` has.
EVENTS = {
    "customers": ("customer.*", "customer"),
    "products": ("product.*", "product"),
    "prices": ("price.*", "price"),
    "subscriptions": ("customer.subscription.*", "subscription"),
    "invoices": ("invoice.*", "invoice"),
    "charges": ("charge.*", "charge"),
    "refunds": ("refund.*", "refund"),
}
SOFT_DELETED = {"customer.deleted", "product.deleted", "price.deleted", "invoice.deleted"}


def normalise_invoice(invoice: dict[str, Any]) -> dict[str, Any]:
    """Put the invoice's subscription id in one `subscription` column whatever the API version."""
    parent = invoice.get("parent") or {}
    from_parent = (parent.get("subscription_details") or {}).get("subscription")
    invoice["subscription"] = invoice.get("subscription") or from_parent
    return invoice


def normalise_subscription(sub: dict[str, Any]) -> dict[str, Any]:
    """Put the current period on the items whatever the API version."""
    start, end = sub.pop("current_period_start", None), sub.pop("current_period_end", None)
    for item in (sub.get("items") or {}).get("data") or []:
        if item.get("current_period_start") is None:
            item["current_period_start"] = start
        if item.get("current_period_end") is None:
            item["current_period_end"] = end
    return sub


NORMALISE = {"invoices": normalise_invoice, "subscriptions": normalise_subscription}


def _prepare(obj: str, record: dict[str, Any]) -> dict[str, Any]:
    normalise = NORMALISE.get(obj)
    if normalise and record.get("id"):
        record = normalise(record)
    return quarantine.require("stripe", obj, "id")(record)


def _client(base_url: str, api_key: str, api_version: str | None) -> RESTClient:
    return RESTClient(
        base_url=base_url.rstrip("/") + "/",
        headers={"Stripe-Version": api_version} if api_version else None,
        auth=BearerTokenAuth(api_key),
        session=retrying_session(),
        paginator=JSONResponseCursorPaginator(
            cursor_path="data[-1].id", cursor_param="starting_after", has_more_path="has_more"
        ),
        data_selector="data",
    )


def _newest_event(client: RESTClient) -> int:
    response = client.get("v1/events", params={"limit": 1})
    response.raise_for_status()
    newest = response.json().get("data") or []
    return newest[0]["created"] if newest else 0


def _changed_since(client: RESTClient, obj: str, state: dict) -> Iterator[dict[str, Any]]:
    """The newest version of every object an event since the last run touched."""
    type_filter, object_name = EVENTS[obj]
    since, seen = state["events_since"], set(state.get("events_seen", []))
    latest: dict[str, dict[str, Any]] = {}
    newest_at, newest_ids = since, set(seen)
    params = {"type": type_filter, "created[gte]": since, "limit": 100}
    for page in client.paginate("v1/events", params=params):
        for event in page:  # newest first: the first event per object is its latest state
            if event["id"] in seen:
                continue
            if event["created"] > newest_at:
                newest_at, newest_ids = event["created"], set()
            if event["created"] == newest_at:
                newest_ids.add(event["id"])
            record = event["data"]["object"]
            if record.get("object") != object_name:
                continue
            key = record.get("id")
            if key is not None and key in latest:
                continue
            if event["type"] in SOFT_DELETED:
                record = {**record, "deleted": True}
            latest[key if key is not None else event["id"]] = record
    # Events of the newest second may still be arriving: read it again next time, skipping
    # the ones already seen.
    state["events_since"], state["events_seen"] = newest_at, sorted(newest_ids)
    yield from latest.values()


def _resource(obj: str, client: RESTClient):
    # `deleted` exists from the first load on, so staging can filter on it before any delete.
    @dlt.resource(name=obj, table_name=quarantine.table_for(obj), primary_key="id", write_disposition="merge",
                  columns={"deleted": {"data_type": "bool"}})
    def objects() -> Iterator[list[dict[str, Any]]]:
        state = dlt.current.resource_state()
        if "events_since" not in state:
            # Note the newest event first: whatever happens while we list is replayed next run.
            events_since = _newest_event(client)
            params = {"limit": 100, **({"status": "all"} if obj == "subscriptions" else {})}
            for page in client.paginate(f"v1/{obj}", params=params):
                yield [_prepare(obj, r) for r in page]
            state["events_since"], state["events_seen"] = events_since, []
        else:
            batch = [_prepare(obj, r) for r in _changed_since(client, obj, state)]
            if batch:
                yield batch

    return objects


@dlt.source(name="stripe", max_table_nesting=2)
def stripe_source(
    base_url: str = dlt.config.value,
    api_key: str = dlt.secrets.value,
    api_version: str | None = None,
    objects: tuple[str, ...] = OBJECTS,
):
    client = _client(base_url, api_key, api_version)
    return [_resource(obj, client) for obj in objects]
