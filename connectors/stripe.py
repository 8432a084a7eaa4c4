"""Stripe billing: customers, products, prices, coupons, subscriptions (with items and
discounts), invoices (with lines), invoice payments, charges, refunds.

Endpoints  `GET {base_url}/v1/<object>` (newest first, `limit=100`, paged with `starting_after`;
           subscriptions and invoices with `expand[]=data.discounts`) and `GET {base_url}/v1/events`
           (`type=<prefix>.*`, `created[gte]`).
Auth       Bearer secret key (`sources.stripe.api_key`); `sources.stripe.api_version` pins a
           `Stripe-Version` (default: the account's own).
Increment  Stripe lists filter only on `created`, so changes come from events, as Stripe
           recommends: the first run lists every object and notes the newest event; later runs
           read only the events since then and load the object each one carries (the newest
           per object wins). Stripe keeps events for 30 days: a pipeline idle for longer misses
           changes and must be reloaded in full (drop the `raw_stripe` schema, run again).
Deletes    a `*.deleted` event (customer, product, price, coupon, invoice) keeps the row with
           `deleted = true`, a soft delete that staging filters out; a canceled subscription is
           an update (status `canceled`).
Write      merge on `id`, so a re-read never duplicates and the latest state wins; the first
           run's full listing replaces the tables instead (merging if a page came twice, see
           `fast_path.Listing`).
Contract   every batch is conformed to `connectors/contracts/stripe.yml` (every column staging
           reads exists, typed as Stripe documents it; see `connectors.contract`); an object
           without an `id` goes to `raw_stripe.quarantine` with the reason; other columns
           evolve (a new field becomes a new column). `metadata` stays one JSON column: its keys
           are the account's own.
Nesting    subscription items become the table `subscriptions__items__data`, keyed by
           `subscription` and `position` (merged per subscription: a reloaded subscription
           replaces its items), with the price flattened into `price__*` columns and
           `price__recurring` as JSON text. Invoice lines (what each invoice billed: price,
           quantity, period, discounts) become `invoices__lines__data`, keyed by `invoice` and
           `position` and merged per invoice, flattened to `pricing__price_details__price`,
           `parent__subscription_item_details__subscription_item`, `period__start`, ... with
           `discount_amounts` as JSON text. Discount objects found on subscriptions and invoices
           (expanded, or embedded before 2025-03-31) and those `customer.discount.*` events
           carry go to the table `discounts`, keyed by their own `id`; the parents keep
           `discounts` as a JSON list of discount ids. Other nested objects become
           `parent__child` columns two levels deep.
Speed      pages are read 100 at a time (Stripe's maximum), every object's list by a thread of
           its own a batch ahead, and loaded as Arrow tables of up to `BATCH` records (see
           `connectors.fast_path`).
Versions   objects come in the shape of the account's API version, and an account that
           upgraded has rows of both in its history (events keep the version they were made
           in). Both shapes land in the same columns, field by field:
           - 2025-03-31 moved the current period from the subscription to its items (the
             period lands on the items either way); the invoice's subscription under
             `parent.subscription_details` (one `subscription` column); an invoice line's
             price and subscription item under `pricing` and `parent` (the current columns);
             removed `discount` from subscriptions and invoices for `discounts` (both become
             the `discounts` list and rows of the `discounts` table); and removed `invoice`
             from charges: the link is an invoice payment (`invoice_payments`, whose
             `payment__payment_intent` or `payment__charge` names the charge), while charges
             of older versions keep their `invoice` column;
           - 2025-09-30 replaced a discount's embedded `coupon` by `source.coupon` (an id):
             `discounts` has both `coupon__*` and `source__coupon` columns, and `coupons`
             lists every coupon.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from connectors import fast_path, quarantine
from connectors.http import ApiClient, SourceRequestError

OBJECTS = (
    "customers",
    "products",
    "prices",
    "coupons",
    "subscriptions",
    "invoices",
    "invoice_payments",
    "charges",
    "refunds",
)
# The event types that carry each object (`type` takes a `prefix.*` wildcard) and the object
# name the event's `data.object` has.
EVENTS = {
    "customers": ("customer.*", "customer"),
    "products": ("product.*", "product"),
    "prices": ("price.*", "price"),
    "coupons": ("coupon.*", "coupon"),
    "subscriptions": ("customer.subscription.*", "subscription"),
    "invoices": ("invoice.*", "invoice"),
    "invoice_payments": ("invoice_payment.*", "invoice_payment"),
    "charges": ("charge.*", "charge"),
    "refunds": ("refund.*", "refund"),
    "discounts": ("customer.discount.*", "discount"),
}
SOFT_DELETED = {"customer.deleted", "product.deleted", "price.deleted", "coupon.deleted", "invoice.deleted"}
PAGE = 100  # Stripe's largest page
BATCH = 20_000  # records per Arrow table handed to dlt
LEVELS = 2  # nested objects flattened this deep (`pricing__price_details__price`)
ITEMS = "subscriptions__items__data"
LINES = "invoices__lines__data"
DISCOUNTS = "discounts"
# Tables a resource writes besides its own: children keyed by their parent, and discounts.
CHILDREN = {"subscriptions": {ITEMS: "subscription"}, "invoices": {LINES: "invoice"}}
RELATED = {"subscriptions": {DISCOUNTS: "id"}, "invoices": {DISCOUNTS: "id"}}
# Free-form maps (the account's own keys): one JSON column each.
WHOLE = ("metadata",)
# Invoice lines before 2025-03-31 named their price, subscription item and one-off item at
# the top level; each lands in the column the current shape gives it.
OLD_LINE_COLUMNS = {
    "price__id": "pricing__price_details__price",
    "price__product": "pricing__price_details__product",
    "price__unit_amount": "pricing__unit_amount_decimal",
    "subscription": "parent__subscription_item_details__subscription",
    "subscription_item": "parent__subscription_item_details__subscription_item",
    "proration": "parent__subscription_item_details__proration",
    "invoice_item": "parent__invoice_item_details__invoice_item",
}
OLD_LINE_TYPES = {"subscription": "subscription_item_details", "invoiceitem": "invoice_item_details"}


def _subscription_link(table: pa.Table) -> pa.Table:
    """Invoices: the subscription id in one `subscription` column whatever the API version
    (the top-level field before 2025-03-31, `parent.subscription_details` since)."""
    sources = [
        table[c] for c in ("subscription", "parent__subscription_details__subscription") if c in table.column_names
    ]
    if not sources:
        return table
    link = pc.coalesce(*sources) if len(sources) > 1 else sources[0]
    if "subscription" in table.column_names:
        return table.set_column(table.column_names.index("subscription"), "subscription", link)
    return table.append_column("subscription", link)


PERIOD = ("current_period_start", "current_period_end")
EXPAND_DISCOUNTS = {"expand[]": "data.discounts"}


class Api:
    def __init__(self, base_url: str, api_key: str, api_version: str | None):
        headers = {"Authorization": f"Bearer {api_key}"}
        if api_version:
            headers["Stripe-Version"] = api_version
        self.http = ApiClient("stripe", base_url, headers)

    def get(self, path: str, params: dict) -> dict:
        return self.http.get(path, params).json

    def list(self, path: str, params: dict) -> Iterator[fast_path.Chunk]:
        """Every page of a list, following `starting_after` while `has_more`."""
        params = dict(params, limit=PAGE)
        while True:
            page = self.http.get(path, params)
            data = page.json.get("data") or []
            yield fast_path.Chunk.of(page, "data")
            if not page.json.get("has_more") or not data:
                return
            params["starting_after"] = data[-1]["id"]

    def list_expanding_discounts(self, path: str, params: dict) -> Iterator[fast_path.Chunk]:
        """A list with its objects' discounts expanded; an API version that cannot expand them
        (older than `discounts` itself) answers 400, and the list is read as it comes: those
        versions embed the discount whole in `discount`."""
        expanding = self.list(path, {**params, **EXPAND_DISCOUNTS})
        try:
            first = next(expanding, None)
        except SourceRequestError as exc:
            if exc.status != 400:
                raise
            yield from self.list(path, params)
            return
        if first is not None:
            yield first
            yield from expanding


def _newest_event(api: Api) -> int:
    newest = api.get("v1/events", {"limit": 1}).get("data") or []
    return newest[0]["created"] if newest else 0


def _changed_since(api: Api, kind: str, state: dict, prefix: str = "events") -> list[dict[str, Any]]:
    """The newest version of every object of `kind` (a key of `EVENTS`) an event since the
    last run touched; the cursor lives in `state` under `<prefix>_since` / `<prefix>_seen`."""
    type_filter, object_name = EVENTS[kind]
    since, seen = state.get(f"{prefix}_since", 0), set(state.get(f"{prefix}_seen", []))
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
    state[f"{prefix}_since"], state[f"{prefix}_seen"] = newest_at, sorted(newest_ids)
    return list(latest.values())


def _current_line_shape(lines: pa.Table) -> pa.Table:
    """Invoice lines in the current API version's columns, whichever version sent them."""
    for old, new in OLD_LINE_COLUMNS.items():
        if old in lines.column_names and new not in lines.column_names:
            values = lines[old].cast(pa.string()) if new == "pricing__unit_amount_decimal" else lines[old]
            lines = lines.append_column(new, values)
    if "type" in lines.column_names and "parent__type" not in lines.column_names:
        mapped = pa.array(
            [OLD_LINE_TYPES.get(v, v) if v is not None else None for v in lines["type"].to_pylist()], pa.string()
        )
        lines = lines.append_column("parent__type", mapped)
    return lines.drop_columns(
        [
            c
            for c in lines.column_names
            if c.startswith(("price__", "plan__")) or c in OLD_LINE_COLUMNS or c in ("type", "price", "plan")
        ]
    )


def _id_lists(listed: pa.Array) -> pa.Array:
    """A list column of discounts (objects when expanded, ids otherwise) as JSON text lists of
    their ids (`["di_1","di_2"]`), computed on the whole column: an invoice listing costs
    hundreds of thousands of them."""
    values = pc.list_flatten(listed)
    if pa.types.is_struct(values.type):
        values = (
            pc.struct_field(values, "id")
            if values.type.get_field_index("id") >= 0
            else pa.nulls(len(values), pa.string())
        )
    elif not pa.types.is_string(values.type):
        values = values.cast(pa.string()) if not pa.types.is_null(values.type) else pa.nulls(len(values), pa.string())
    values = pc.fill_null(values, "")  # an id-less entry never reaches the list below
    offsets = pc.subtract(listed.offsets, listed.offsets[0])
    ids = pa.ListArray.from_arrays(offsets, values, mask=pc.is_null(listed))
    joined = pc.binary_join_element_wise('["', pc.binary_join(ids, '","'), '"]', "")
    return pc.if_else(pc.equal(pc.list_value_length(ids), 0), pa.scalar("[]"), joined)


def _discounts(table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
    """Subscriptions or invoices without their discount objects, and those objects.

    `discounts` becomes the list of discount ids as JSON text (the objects themselves when
    expanded, ids otherwise); a discount embedded whole in `discount` (before 2025-03-31)
    stands for the list where the object has none.
    """
    found: list[pa.Table] = []
    ids = pa.nulls(len(table), pa.string())
    if "discounts" in table.column_names:
        listed = table["discounts"].combine_chunks()
        values = pc.list_flatten(listed)
        if pa.types.is_struct(values.type):
            found.append(pa.Table.from_struct_array(values))
        ids = _id_lists(listed)
        table = table.drop_columns(["discounts"])
    if "discount" in table.column_names:
        embedded = table["discount"].combine_chunks()
        if pa.types.is_struct(embedded.type) and embedded.type.get_field_index("id") >= 0:
            present = pc.is_valid(pc.struct_field(embedded, "id"))
            if pc.any(present).as_py():
                found.append(pa.Table.from_struct_array(embedded.filter(present)))
                alone = pc.binary_join_element_wise('["', pc.struct_field(embedded, "id"), '"]', "")
                listless = pc.or_kleene(pc.is_null(ids), pc.equal(ids, "[]"))
                ids = pc.if_else(pc.and_kleene(listless, present), alone, ids)
        table = table.drop_columns(["discount"])
    table = table.append_column("discounts", ids)
    if not found:
        return table, None
    objects = pa.concat_tables([fast_path.shape(t, LEVELS, whole=WHOLE) for t in found], promote_options="permissive")
    objects = objects.filter(pc.is_valid(objects["id"])) if "id" in objects.column_names else objects.slice(0, 0)
    if not len(objects):
        return table, None
    # The same discount on several parents of a batch: one row.
    first = pc.equal(pc.index_in(objects["id"], objects["id"]), pa.array(range(len(objects)), pa.int32()))
    return table, fast_path.required(objects.filter(first), ["id"])


def _tables(
    obj: str, batch: list[fast_path.Chunk], reader: fast_path.RecordReader, listing: fast_path.Listing
) -> Iterator[Any]:
    """One batch of pages as dlt items: the Arrow table, its items, its quarantine rows."""
    records, bad = fast_path.split_missing(reader.read(batch), batch, ["id"])
    if bad:
        yield quarantine.mark(quarantine.row("stripe", obj, "missing required field(s): id", r) for r in bad)
    if not len(records):
        return
    discounts = None
    if obj in RELATED:
        records, discounts = _discounts(records)
    keep = {"subscriptions": ["items__data"], "invoices": ["lines__data"]}.get(obj, [])
    table = fast_path.to_table(records, LEVELS, keep=keep, whole=WHOLE)
    if "deleted" not in table.column_names:
        # Present from the first load on, so staging can filter on it before any delete.
        table = table.append_column("deleted", pa.nulls(len(table), pa.bool_()))
    if obj == "invoices":
        table = _subscription_link(table)
    if obj == DISCOUNTS:
        yield listing.related(table, DISCOUNTS)
        return
    listing.check(table)
    if discounts is not None:
        yield listing.related(discounts, DISCOUNTS)
    if obj == "subscriptions" and "items__data" in table.column_names:
        # Items sit one level down (`items.data`), so their own objects get one level less.
        # Before 2025-03-31 the current period sat on the subscription: it moves to the items.
        inherit = {c: table[c] for c in PERIOD if c in table.column_names}
        items = fast_path.children(
            table["items__data"],
            table["id"],
            "subscription",
            LEVELS - 1,
            inherit=inherit,
            markers=not listing.replacing,
        )
        yield listing.table(table.drop_columns(["items__data", *inherit]))
        yield listing.child(items, ITEMS, "subscription")
    elif obj == "invoices" and "lines__data" in table.column_names:
        # Lines sit one level down too, but their price and subscription item sit two deeper
        # (`pricing.price_details.price`): flattened as far, into columns of their own.
        lines = fast_path.children(table["lines__data"], table["id"], "invoice", LEVELS, markers=not listing.replacing)
        yield listing.table(table.drop_columns(["lines__data"]))
        yield listing.child(_current_line_shape(lines), LINES, "invoice")
    else:
        yield listing.table(
            table.drop_columns([c for c in PERIOD if c in table.column_names]) if obj == "subscriptions" else table
        )


def _resource(obj: str, api: Api):
    @dlt.resource(name=obj, primary_key="id", write_disposition="merge", parallelized=True)
    def objects() -> Iterator[Any]:
        state = dlt.current.resource_state()
        reader = fast_path.RecordReader("data")
        if "events_since" not in state:
            # Note the newest event first: whatever happens while we list is replayed next run.
            events_since = _newest_event(api)
            params = {"status": "all"} if obj == "subscriptions" else {}
            listed = (
                api.list_expanding_discounts(f"v1/{obj}", params) if obj in RELATED else api.list(f"v1/{obj}", params)
            )
            batches = fast_path.read_ahead(fast_path.batches(listed, BATCH))
        else:
            events_since, batches = None, iter([[fast_path.Chunk(_changed_since(api, obj, state))]])
        listing = fast_path.Listing(obj, full=events_since is not None, source="stripe")
        for batch in batches:
            yield from _tables(obj, batch, reader, listing)
        if obj == "subscriptions":
            # Discounts made since the last run (a coupon applied) come as events of their own:
            # objects read since 2025-03-31 name their discounts by id only.
            if events_since is not None:
                state["discount_events_since"], state["discount_events_seen"] = events_since, []
            else:
                changed = _changed_since(api, DISCOUNTS, state, prefix="discount_events")
                yield from _tables(DISCOUNTS, [fast_path.Chunk(changed)], fast_path.RecordReader("data"), listing)
        yield from listing.missing(CHILDREN.get(obj), RELATED.get(obj))
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
