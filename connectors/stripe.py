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
Write      merge on `id`, so a re-read never duplicates and the latest state wins; the first
           run's full listing replaces the tables instead (merging if a page came twice, see
           `pages.Listing`).
Contract   an object without an `id` goes to `raw_stripe.quarantine` with the reason; other
           columns evolve (a new field becomes a new column).
Nesting    subscription items become the table `subscriptions__items__data`, keyed by their own
           `id` and linked to their subscription by `subscription` (merged per subscription: a
           reloaded subscription replaces its items), with the price flattened into `price__*`
           columns and `price__recurring` as JSON text. Invoice lines (what each invoice billed:
           price, quantity, period, discounts) become `invoices__lines__data`, keyed by `invoice`
           and `position` and merged per invoice, flattened to `pricing__price_details__price`,
           `parent__subscription_item_details__subscription_item`, `period__start`, ... with
           `discount_amounts` as JSON text. Other nested objects become `parent__child` columns
           two levels deep (`discount__coupon__percent_off`).
Speed      pages are read 100 at a time (Stripe's maximum), every object's list by a thread of
           its own a batch ahead, and loaded as Arrow tables of up to `BATCH` records (see
           `connectors.pages`).
Shapes     API version 2025-03-31 moved the current period from the subscription to its items,
           the invoice's subscription under `parent.subscription_details`, and an invoice
           line's price and subscription item under `pricing` and `parent`; both shapes are
           accepted: periods always land on the items, the invoice's subscription id in one
           `subscription` column, and lines in the current shape's columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from connectors import pages, quarantine
from connectors.http import ApiClient

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
PAGE = 100  # Stripe's largest page
BATCH = 20_000  # records per Arrow table handed to dlt
LEVELS = 2  # nested objects flattened this deep (`discount__coupon__percent_off`)
ITEMS = "subscriptions__items__data"
LINES = "invoices__lines__data"
# Invoice lines before 2025-03-31 named their price and subscription item at the top level;
# each lands in the column the current shape gives it.
OLD_LINE_COLUMNS = {
    "price__id": "pricing__price_details__price",
    "price__product": "pricing__price_details__product",
    "price__unit_amount": "pricing__unit_amount_decimal",
    "subscription": "parent__subscription_item_details__subscription",
    "subscription_item": "parent__subscription_item_details__subscription_item",
    "proration": "parent__subscription_item_details__proration",
}
# Numbers Stripe sends as decimals even when a page happens to hold only whole ones.
DECIMALS = {"discount__coupon__percent_off": pa.float64()}


def _subscription_link(table: pa.Table) -> pa.Table:
    """Invoices: the subscription id in one `subscription` column whatever the API version
    (the top-level field before 2025-03-31, `parent.subscription_details` since)."""
    sources = [table[c] for c in ("subscription", "parent__subscription_details__subscription") if c in table.column_names]
    if not sources:
        return table
    link = pc.coalesce(*sources) if len(sources) > 1 else sources[0]
    if "subscription" in table.column_names:
        return table.set_column(table.column_names.index("subscription"), "subscription", link)
    return table.append_column("subscription", link)


PERIOD = ("current_period_start", "current_period_end")


class Api:
    def __init__(self, base_url: str, api_key: str, api_version: str | None):
        headers = {"Authorization": f"Bearer {api_key}"}
        if api_version:
            headers["Stripe-Version"] = api_version
        self.http = ApiClient("stripe", base_url, headers)

    def get(self, path: str, params: dict) -> dict:
        return self.http.get(path, params).json

    def list(self, path: str, params: dict) -> Iterator[pages.Chunk]:
        """Every page of a list, following `starting_after` while `has_more`."""
        params = dict(params, limit=PAGE)
        while True:
            page = self.http.get(path, params)
            data = page.json.get("data") or []
            yield pages.Chunk.of(page, "data")
            if not page.json.get("has_more") or not data:
                return
            params["starting_after"] = data[-1]["id"]


def _newest_event(api: Api) -> int:
    newest = api.get("v1/events", {"limit": 1}).get("data") or []
    return newest[0]["created"] if newest else 0


def _changed_since(api: Api, obj: str, state: dict) -> list[dict[str, Any]]:
    """The newest version of every object an event since the last run touched."""
    type_filter, object_name = EVENTS[obj]
    since, seen = state["events_since"], set(state.get("events_seen", []))
    latest: dict[str, dict[str, Any]] = {}
    newest_at, newest_ids = since, set(seen)
    for chunk in api.list("v1/events", {"type": type_filter, "created[gte]": since}):
        for event in chunk.records:  # newest first: the first event per object is its latest state
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
    return list(latest.values())


def _current_line_shape(lines: pa.Table) -> pa.Table:
    """Invoice lines in the current API version's columns, whichever version sent them."""
    for old, new in OLD_LINE_COLUMNS.items():
        if old in lines.column_names and new not in lines.column_names:
            values = lines[old].cast(pa.string()) if new == "pricing__unit_amount_decimal" else lines[old]
            lines = lines.append_column(new, values)
    return lines.drop_columns([c for c in lines.column_names if c.startswith("price__") or c in OLD_LINE_COLUMNS])


def _tables(obj: str, batch: list[pages.Chunk], reader: pages.RecordReader, listing: pages.Listing) -> Iterator[Any]:
    """One batch of pages as dlt items: the Arrow table, its items, its quarantine rows."""
    records, bad = pages.split_missing(reader.read(batch), batch, ["id"])
    if bad:
        yield quarantine.mark(quarantine.row("stripe", obj, "missing required field(s): id", r) for r in bad)
    if not len(records):
        return
    keep = {"subscriptions": ["items__data"], "invoices": ["lines__data"]}.get(obj, [])
    table = pages.to_table(records, LEVELS, keep=keep)
    if "deleted" not in table.column_names:
        # Present from the first load on, so staging can filter on it before any delete.
        table = table.append_column("deleted", pa.nulls(len(table), pa.bool_()))
    for name, kind in DECIMALS.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table[name].cast(kind))
    if obj == "invoices":
        table = _subscription_link(table)
    listing.check(table)
    if obj == "subscriptions" and "items__data" in table.column_names:
        # Items sit one level down (`items.data`), so their own objects get one level less.
        # Before 2025-03-31 the current period sat on the subscription: it moves to the items.
        inherit = {c: table[c] for c in PERIOD if c in table.column_names}
        items = pages.children(table["items__data"], table["id"], "subscription", LEVELS - 1, inherit=inherit,
                               markers=not listing.replacing)
        yield listing.table(table.drop_columns(["items__data", *inherit]))
        yield listing.child(items, ITEMS, "subscription")
    elif obj == "invoices" and "lines__data" in table.column_names:
        # Lines sit one level down too, but their price and subscription item sit two deeper
        # (`pricing.price_details.price`): flattened as far, into columns of their own.
        lines = pages.children(table["lines__data"], table["id"], "invoice", LEVELS, markers=not listing.replacing)
        yield listing.table(table.drop_columns(["lines__data"]))
        yield listing.child(_current_line_shape(lines), LINES, "invoice")
    else:
        yield listing.table(table)


def _resource(obj: str, api: Api):
    @dlt.resource(name=obj, primary_key="id", write_disposition="merge", parallelized=True)
    def objects() -> Iterator[Any]:
        state = dlt.current.resource_state()
        reader = pages.RecordReader("data")
        if "events_since" not in state:
            # Note the newest event first: whatever happens while we list is replayed next run.
            events_since = _newest_event(api)
            params = {"status": "all"} if obj == "subscriptions" else {}
            batches = pages.read_ahead(pages.batches(api.list(f"v1/{obj}", params), BATCH))
        else:
            events_since, batches = None, iter([[pages.Chunk(_changed_since(api, obj, state))]])
        listing = pages.Listing(obj, full=events_since is not None)
        for batch in batches:
            yield from _tables(obj, batch, reader, listing)
        if events_since is not None:
            state["events_since"], state["events_seen"] = events_since, []

    return objects


@dlt.source(name="stripe", max_table_nesting=2)
def stripe_source(
    base_url: str = dlt.config.value,
    api_key: str = dlt.secrets.value,
    api_version: str | None = None,
    objects: tuple[str, ...] = OBJECTS,
):
    api = Api(base_url, api_key, api_version)
    return [_resource(obj, api) for obj in objects]
