"""Stripe-style list API: `GET /v1/<objects>` and `GET /v1/events`, with Bearer auth.

Lists are newest first, paged with `limit` (max 100) and `starting_after=<id>`, filtered with
`created[gt|gte|lt|lte]`; subscriptions exclude canceled ones unless `status=all`, and deleted
objects are gone from lists, as on Stripe. What changed is told by events (`customer.updated`,
`customer.deleted`, ...), each carrying the object as it was then; `type=customer.*` filters by
prefix. `expand[]=data.discounts` replaces the discount ids of listed subscriptions and
invoices by the Discount objects (Stripe has no list of discounts).

Objects are stored in the newest shape and rendered in the API version the request asks for
(`Stripe-Version`) or the account's default, as Stripe does:

- before 2025-03-31: a charge names its `invoice`; an invoice its `subscription` (no `parent`)
  and its first discount whole in `discount`, and says whether it is `paid`; an invoice line
  names its price (the whole object), subscription item and `type`; the current period sits
  on the subscription, which also shows its first discount in `discount`; a discount embeds
  its coupon;
- 2025-03-31.basil until 2025-09-30: the current shape, but a discount still embeds its coupon;
- from 2025-09-30.clover: a discount names its coupon in `source.coupon`.

Customers are also read, updated and deleted one at a time, as Stripe documents:
`GET /v1/customers/{id}` retrieves one (a deleted one as `{"id", "object": "customer",
"deleted": true}`); `POST /v1/customers/{id}` updates one from a form-encoded body (`email`,
`name`, `phone`, `description`, `metadata[<key>]`; an empty value clears the field) and answers
the customer, writing a `customer.updated` event; `DELETE /v1/customers/{id}` deletes one for
good and answers `{"id", "object": "customer", "deleted": true}`: the customer is gone from the
list, its live subscriptions are canceled now (each with a `customer.subscription.deleted`
event) and a `customer.deleted` event is written. A deleted or unknown customer is a 404
(`resource_missing`) to both. Stripe keeps events 30 days; the stand-in keeps them for good,
so it keeps no personal data an erasure removed: a deleted customer's events (its
`customer.deleted` one too) carry it with `email`, `name`, `phone`, `address`, `shipping`,
`description` and `individual_name` null, and a field an update cleared is cleared in the
customer's earlier events, which record no `previous_attributes`.
"""

from __future__ import annotations

import bisect
import copy
import secrets
import string
import time
from array import array

import orjson

from sample_company.variants import LATEST_STRIPE_VERSION
from sample_company.vendor_api.store import RecordStore, Table, Write

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
LISTABLE = OBJECTS + ("events",)
# Objects a company generated before they existed has no file of: an empty list, not a 404.
OPTIONAL = {"coupons", "invoice_payments", "events"}
BASIL = "2025-03-31"
CLOVER = "2025-09-30"
CURRENT_VERSION = LATEST_STRIPE_VERSION
# Lists whose objects carry discount ids that `expand[]=data.discounts` turns into objects.
EXPANDABLE = {"subscriptions", "invoices"}


def _error(status: int, message: str, type_: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"type": type_, "message": message}}


def authorized(headers, api_key: str) -> bool:
    return headers.get("Authorization", "") == f"Bearer {api_key}"


def era(version: str) -> str:
    """`legacy`, `basil` or `clover`: which shape a version's objects have."""
    day = version[:10]
    return "legacy" if day < BASIL else "basil" if day < CLOVER else "clover"


# What a table keeps of each Stripe record: lists sort by `created` and `id`, subscriptions
# filter by `status`, events by `type`, and only an object with discounts changes when they
# are expanded.
FIELDS = ("id", "created", "status", "type", "discounted")


def _fields(obj: str, record: dict) -> tuple:
    return (
        record.get("id"),
        _created(record),
        record.get("status") if obj == "subscriptions" else None,
        record.get("type") if obj == "events" else None,
        # Expanding leaves only an empty list of discounts as it is (a missing or null one becomes []).
        record.get("discounts") != [] if obj in EXPANDABLE else False,
    )


def table(store: RecordStore, obj: str) -> Table:
    return store.table("stripe", obj, FIELDS, _fields, optional=obj in OPTIONAL or obj == "discounts")


class Lookups:
    """What rendering one object needs from others: discounts and coupons by id, and the
    invoice each PaymentIntent paid."""

    def __init__(self, store: RecordStore):
        self.store = store

    def by_id(self, obj: str) -> dict[str, dict]:
        # Discounts and coupons: a few thousand objects, parsed once per version.
        return self.store.derived(
            table(self.store, obj), "by_id", lambda t: {r["id"]: r for _, r in t.scan() if r.get("id")}
        )

    def discount(self, discount_id: str, version: str) -> dict | None:
        found = self.by_id("discounts").get(discount_id)
        return None if found is None else render_discount(found, version, self)

    def coupon(self, coupon_id: str | None) -> dict | None:
        return self.by_id("coupons").get(coupon_id) if coupon_id else None

    def invoice_of_payment_intent(self, payment_intent: str | None) -> str | None:
        index = self.store.derived(
            table(self.store, "invoice_payments"),
            "by_payment_intent",
            lambda t: {(r.get("payment") or {}).get("payment_intent"): r.get("invoice") for _, r in t.scan()},
        )
        return index.get(payment_intent) if payment_intent else None


def render_discount(discount: dict, version: str, lookups: Lookups) -> dict:
    if era(version) == "clover":
        return discount
    old = {k: v for k, v in discount.items() if k != "source"}
    coupon_id = (discount.get("source") or {}).get("coupon")
    old["coupon"] = lookups.coupon(coupon_id) or ({"id": coupon_id, "object": "coupon"} if coupon_id else None)
    return old


def _expanded(obj: dict, version: str, lookups: Lookups) -> list:
    """The object's discounts as Discount objects (an id no discount is stored for stays an id)."""
    return [lookups.discount(d, version) or d for d in obj.get("discounts") or []]


def render(obj: dict, version: str, lookups: Lookups, expand: frozenset = frozenset()) -> dict:
    """The object as an account pinned to `version` receives it, with `expand` applied."""
    kind = obj.get("object")
    shape = era(version)
    if kind == "discount":
        return render_discount(obj, version, lookups)
    expanding = "discounts" in expand and kind in ("subscription", "invoice")
    reshaped = shape == "legacy" and kind in ("subscription", "invoice", "charge")
    if not reshaped:
        if not expanding:
            return obj
        # Only the discounts change: a shallow copy is enough (and a deep one costs seconds
        # over a large account's invoices).
        return {**obj, "discounts": _expanded(obj, version, lookups)}
    old = copy.deepcopy(obj)
    if expanding:
        old["discounts"] = _expanded(obj, version, lookups)
    # A record stored in the old shape already (a documented example of that version) is
    # served as it is: each field is rendered down only where the current shape has it.
    if kind == "charge":
        if "invoice" not in old:
            old["invoice"] = lookups.invoice_of_payment_intent(old.get("payment_intent"))
        return old
    if "discount" not in old:
        first = (obj.get("discounts") or [None])[0]
        old["discount"] = lookups.discount(first, version) if first else None
    if kind == "subscription":
        items = (old.get("items") or {}).get("data") or []
        for item in items:
            start, end = item.pop("current_period_start", None), item.pop("current_period_end", None)
            old.setdefault("current_period_start", start)
            old.setdefault("current_period_end", end)
        return old
    if "parent" in old:
        parent = old.pop("parent") or {}
        old["subscription"] = (parent.get("subscription_details") or {}).get("subscription")
    old.setdefault("paid", old.get("status") == "paid")
    for line in (old.get("lines") or {}).get("data") or []:
        if "pricing" not in line and "parent" not in line:
            continue
        # Lines named their price (whole), subscription item and kind at the top level.
        pricing = line.pop("pricing", None) or {}
        details = pricing.get("price_details") or {}
        line["price"] = (
            {
                "id": details.get("price"),
                "object": "price",
                "product": details.get("product"),
                "unit_amount": int(pricing["unit_amount_decimal"]) if pricing.get("unit_amount_decimal") else None,
                "currency": line.get("currency"),
            }
            if details
            else None
        )
        line_parent = line.pop("parent", None) or {}
        item = line_parent.get("subscription_item_details") or {}
        one_off = line_parent.get("invoice_item_details") or {}
        line["type"] = "invoiceitem" if one_off else "subscription"
        line["subscription"] = item.get("subscription") or one_off.get("subscription")
        line["subscription_item"] = item.get("subscription_item")
        line["invoice_item"] = one_off.get("invoice_item") or item.get("invoice_item")
        line["proration"] = bool(item.get("proration") or one_off.get("proration"))
    return old


def _created(record: dict) -> float:
    """A record's `created` (Unix seconds). A fixture may hold anything there (a date string,
    null): such a record sorts and filters as created at 0 rather than failing every request."""
    value = record.get("created")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def newest_first(t: Table) -> tuple[array, dict]:
    """The table's positions newest first (ties by id), and each id's rank in that order:
    pages are found by bisecting ranks."""
    created, ids = t.columns["created"], t.columns["id"]
    order = array("q", sorted(range(len(t)), key=lambda p: (-created[p], str(ids[p] or ""))))
    return order, {ids[p]: rank for rank, p in enumerate(order) if ids[p]}


COMPARISONS = {
    "gt": lambda v, x: v > x,
    "gte": lambda v, x: v >= x,
    "lt": lambda v, x: v < x,
    "lte": lambda v, x: v <= x,
}


def _filters(obj: str, params: dict[str, str]) -> tuple:
    """The request's filters, in a form that names a filtered list (empty: no filter)."""
    filters: list[tuple] = []
    if obj == "subscriptions" and params.get("status", "") != "all":
        filters.append(("status", params.get("status") or None))
    if obj == "events" and params.get("type"):
        filters.append(("type", params["type"]))
    for op in COMPARISONS:
        bound = params.get(f"created[{op}]")
        if bound is not None:
            filters.append((op, int(bound)))
    return tuple(filters)


def _filtered(t: Table, order: array, filters: tuple) -> array:
    """The ranks (positions in `order`) of the records the filters keep, in order."""
    created, status, kind = t.columns["created"], t.columns["status"], t.columns["type"]
    tests = []
    for name, wanted in filters:
        if name == "status":
            tests.append((lambda p, w=wanted: status[p] == w) if wanted else (lambda p: status[p] != "canceled"))
        elif name == "type" and wanted.endswith(".*"):
            tests.append(lambda p, w=wanted[:-1]: str(kind[p]).startswith(w))
        elif name == "type":
            tests.append(lambda p, w=wanted: kind[p] == w)
        else:
            tests.append(lambda p, c=COMPARISONS[name], w=wanted: c(created[p], w))
    return array("q", (rank for rank, p in enumerate(order) if all(test(p) for test in tests)))


def warm(store: RecordStore) -> None:
    """Index every list before the first request, as a real vendor has it at hand."""
    for obj in OBJECTS:
        store.derived(table(store, obj), "newest_first", newest_first)
    lookups = Lookups(store)
    for obj in ("discounts", "coupons"):
        lookups.by_id(obj)


def handle(
    store: RecordStore, path: str, params: dict[str, str], version: str = CURRENT_VERSION, expand: tuple[str, ...] = ()
) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[:2] == ["v1", "customers"]:
        return _retrieve_customer(store, parts[2])
    if len(parts) != 2 or parts[0] != "v1" or parts[1] not in LISTABLE:
        return _error(404, f"Unrecognized request URL (GET: /{path.strip('/')}).")
    obj = parts[1]
    try:
        limit = int(params.get("limit", "10"))
    except ValueError:
        return _error(400, "Invalid integer: limit")
    if not 1 <= limit <= 100:
        return _error(400, "limit must be between 1 and 100")
    expanded = frozenset(e.removeprefix("data.") for e in expand)
    unknown = expanded - ({"discounts"} if obj in EXPANDABLE else set())
    if unknown:
        return _error(400, f"This property cannot be expanded ({', '.join(sorted(unknown))}).")

    t = table(store, obj)
    order, rank_of = store.derived(t, "newest_first", newest_first)
    try:
        filters = _filters(obj, params)
    except ValueError:
        return _error(400, "Invalid integer: created")
    # Every page of a filtered list asks for the same filter: filter once.
    ranks = store.derived(t, f"filtered:{filters}", lambda _: _filtered(t, order, filters)) if filters else None
    listed: range | array = range(len(order)) if ranks is None else ranks

    start = 0
    after = params.get("starting_after")
    if after:
        if after not in rank_of:
            return _error(400, f"No such object: '{after}'", "invalid_request_error")
        start = bisect.bisect_right(listed, rank_of[after])
    page = [order[rank] for rank in listed[start : start + limit]]
    lookups = Lookups(store)
    if obj == "events":
        data = [
            {**e, "data": {**e["data"], "object": render(e["data"]["object"], version, lookups)}}
            for e in t.records(page)
        ]
    elif era(version) == "legacy":
        data = [render(r, version, lookups, expanded) for r in t.records(page)]
    else:
        # The stored shape is the current one: only objects whose discounts are expanded differ
        # from their lines in the file (a few percent of them), so the rest are served as read.
        discounted = t.columns["discounted"]
        lines = t.raws(page)
        if expanded:
            lines = [
                orjson.dumps(render(orjson.loads(line), version, lookups, expanded)) if discounted[p] else line
                for p, line in zip(page, lines)
            ]
        data = orjson.Fragment(b"[" + b",".join(lines) + b"]")
    return 200, {
        "object": "list",
        "url": f"/v1/{obj}",
        "has_more": start + limit < len(listed),
        "data": data,
    }


# --- One customer: retrieve, update, delete -------------------------------------------------

# A customer's fields that name or reach a person: what a deletion leaves of it nowhere.
PERSONAL = ("email", "name", "phone", "address", "shipping", "description", "individual_name")
# What an update may set (`metadata[<key>]` too); an empty value clears the field.
UPDATABLE = ("email", "name", "phone", "description")
# Subscription statuses a customer's deletion cancels.
LIVE = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete", "paused"})


def _missing(customer_id: str) -> tuple[int, dict]:
    return 404, {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": "id",
            "message": f"No such customer: '{customer_id}'",
        }
    }


def _deleted_stub(customer_id: str) -> dict:
    return {"id": customer_id, "object": "customer", "deleted": True}


def _customer(store: RecordStore, customer_id: str) -> dict | None:
    t = table(store, "customers")
    position_of = store.derived(t, "position_of", lambda t: {i: p for p, i in enumerate(t.columns["id"]) if i})
    position = position_of.get(customer_id)
    return None if position is None else t.record(position)


def _deleted_customers(store: RecordStore) -> frozenset:
    """The ids of the customers a `customer.deleted` event names."""
    t = table(store, "events")

    def build(t: Table) -> frozenset:
        positions = [p for p, kind in enumerate(t.columns["type"]) if kind == "customer.deleted"]
        return frozenset(((e.get("data") or {}).get("object") or {}).get("id") for e in t.records(positions))

    return store.derived(t, "deleted_customers", build)


def _retrieve_customer(store: RecordStore, customer_id: str) -> tuple[int, dict]:
    found = _customer(store, customer_id)
    if found is not None:
        return 200, found
    if customer_id in _deleted_customers(store):
        return 200, _deleted_stub(customer_id)
    return _missing(customer_id)


def write(
    store: RecordStore, method: str, path: str, body: dict | None, version: str = CURRENT_VERSION
) -> Write | None:
    """A request that changes records, answered; None for any other request."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[:2] != ["v1", "customers"]:
        return None
    if method == "DELETE":
        return delete_customer(store, parts[2], version)
    if method == "POST":
        return update_customer(store, parts[2], body or {}, version)
    return None


def _event_id() -> str:
    return "evt_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


def _event(kind: str, obj: dict, at: int, version: str) -> bytes:
    return orjson.dumps(
        {
            "id": _event_id(),
            "object": "event",
            "type": kind,
            "created": at,
            "api_version": version,
            "data": {"object": obj},
        }
    )


def _of_customer(line: bytes, needle: bytes, customer_id: str, key: str) -> dict | None:
    """The line's record when its `key` names the customer (a cheap test first)."""
    if needle not in line:
        return None
    record = orjson.loads(line)
    return record if record.get(key) == customer_id else None


def _forget(line: bytes, needle: bytes, customer_id: str, fields: tuple[str, ...]) -> bytes:
    """An event line with the customer's `fields` cleared wherever it carries the customer."""
    if needle not in line:
        return line
    event = orjson.loads(line)
    data = event.get("data") or {}
    obj = data.get("object") or {}
    if obj.get("object") != "customer" or obj.get("id") != customer_id:
        return line
    held = [f for f in fields if obj.get(f) is not None]
    previous = data.get("previous_attributes") or {}
    before = [f for f in fields if f in previous]
    if not held and not before:
        return line
    for f in held:
        obj[f] = None
    for f in before:
        del previous[f]
    return orjson.dumps(event)


def delete_customer(store: RecordStore, customer_id: str, version: str = CURRENT_VERSION) -> Write:
    """Delete a customer for good: out of the list, its live subscriptions canceled, and its
    personal data gone from every event about it."""
    with store.writing:
        customer = _customer(store, customer_id)
        if customer is None:
            return Write(*_missing(customer_id))
        at = int(time.time())
        needle = orjson.dumps(customer_id)
        events: list[bytes] = []

        def cancel(line: bytes) -> bytes:
            subscription = _of_customer(line, needle, customer_id, "customer")
            if subscription is None or subscription.get("status") not in LIVE:
                return line
            subscription.update(status="canceled", canceled_at=at, ended_at=at)
            events.append(_event("customer.subscription.deleted", subscription, at, version))
            return orjson.dumps(subscription)

        if store.path("stripe", "subscriptions").exists():
            store.rewrite("stripe", "subscriptions", cancel)
        store.rewrite(
            "stripe", "customers", lambda line: None if _of_customer(line, needle, customer_id, "id") else line
        )
        forgotten = {key: None if key in PERSONAL else value for key, value in customer.items()}
        events.append(_event("customer.deleted", forgotten, at, version))
        store.rewrite("stripe", "events", lambda line: _forget(line, needle, customer_id, PERSONAL), events)
    return Write(200, _deleted_stub(customer_id), customer_id)


def update_customer(store: RecordStore, customer_id: str, form: dict, version: str = CURRENT_VERSION) -> Write:
    """Update a customer from a form: the fields given set, an empty one cleared."""
    for key in form:
        if key not in UPDATABLE and not (key.startswith("metadata[") and key.endswith("]")):
            return Write(
                400,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "parameter_unknown",
                        "param": key,
                        "message": f"Received unknown parameter: {key}",
                    }
                },
                customer_id,
            )
    with store.writing:
        customer = _customer(store, customer_id)
        if customer is None:
            return Write(*_missing(customer_id), customer_id)
        metadata = dict(customer.get("metadata") or {})
        for key, value in form.items():
            if key.startswith("metadata["):
                if value == "":
                    metadata.pop(key[len("metadata[") : -1], None)
                else:
                    metadata[key[len("metadata[") : -1]] = value
            else:
                customer[key] = value if value != "" else None
        if any(key.startswith("metadata[") for key in form):
            customer["metadata"] = metadata
        cleared = tuple(key for key, value in form.items() if value == "" and key in UPDATABLE)
        needle, line = orjson.dumps(customer_id), orjson.dumps(customer)
        store.rewrite("stripe", "customers", lambda raw: line if _of_customer(raw, needle, customer_id, "id") else raw)
        event = _event("customer.updated", customer, int(time.time()), version)
        store.rewrite("stripe", "events", lambda raw: _forget(raw, needle, customer_id, cleared), [event])
    return Write(200, customer, customer_id)
