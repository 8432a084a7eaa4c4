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
"""

from __future__ import annotations

import bisect
import copy

import orjson

from sample_company.variants import LATEST_STRIPE_VERSION
from sample_company.vendor_api.store import RecordStore, compact

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


class Lookups:
    """What rendering one object needs from others: discounts and coupons by id, and the
    invoice each PaymentIntent paid."""

    def __init__(self, store: RecordStore):
        self.store = store

    def _by_id(self, obj: str) -> dict[str, dict]:
        return self.store.derived(
            "stripe", obj, "by_id", lambda rows: {r["id"]: r for r in rows if r.get("id")}, optional=True
        )

    def discount(self, discount_id: str, version: str) -> dict | None:
        found = self._by_id("discounts").get(discount_id)
        return None if found is None else render_discount(found, version, self)

    def coupon(self, coupon_id: str | None) -> dict | None:
        return self._by_id("coupons").get(coupon_id) if coupon_id else None

    def invoice_of_payment_intent(self, payment_intent: str | None) -> str | None:
        index = self.store.derived(
            "stripe",
            "invoice_payments",
            "by_payment_intent",
            lambda rows: {(r.get("payment") or {}).get("payment_intent"): r.get("invoice") for r in rows},
            optional=True,
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


def _key(r: dict) -> tuple[float, str]:
    return -_created(r), str(r.get("id") or "")


def newest_first(rows: list[dict]) -> tuple[list[dict], list[tuple[float, str]], dict[str, tuple[float, str]]]:
    """Sorted rows, their sort keys, and each id's key: pages are found by bisection."""
    ordered = sorted(rows, key=_key)
    keys = [_key(r) for r in ordered]
    return ordered, keys, {r["id"]: k for r, k in zip(ordered, keys) if r.get("id")}


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


def _filtered(rows: list[dict], filters: tuple) -> tuple[list[dict], list[tuple[float, str]]]:
    for name, wanted in filters:
        if name == "status":
            rows = [r for r in rows if (r.get("status") == wanted if wanted else r.get("status") != "canceled")]
        elif name == "type" and wanted.endswith(".*"):
            rows = [r for r in rows if str(r.get("type")).startswith(wanted[:-1])]
        elif name == "type":
            rows = [r for r in rows if r.get("type") == wanted]
        else:
            rows = [r for r in rows if COMPARISONS[name](_created(r), wanted)]
    return rows, [_key(r) for r in rows]


def _encoded(store: RecordStore, obj: str, version: str, expanded: frozenset, optional: bool) -> dict[int, bytes]:
    """Each object of a list rendered for `version` with `expanded`, serialized once."""
    lookups = Lookups(store)
    return store.derived(
        "stripe",
        obj,
        f"encoded:{era(version)}:{sorted(expanded)}",
        lambda records: {id(r): compact(orjson.dumps(render(r, version, lookups, expanded))) for r in records},
        optional=optional,
    )


def warm(store: RecordStore, version: str) -> None:
    """Render what an account on `version` lists (with its discounts expanded, as the
    connector asks) before the first request, as a real vendor has it at hand."""
    for obj in OBJECTS:
        optional = obj in OPTIONAL
        store.derived("stripe", obj, "newest_first", newest_first, optional=optional)
        expanded = frozenset({"discounts"}) if obj in EXPANDABLE else frozenset()
        if era(version) != "clover" or expanded:
            _encoded(store, obj, version, expanded, optional)


def handle(
    store: RecordStore, path: str, params: dict[str, str], version: str = CURRENT_VERSION, expand: tuple[str, ...] = ()
) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
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

    optional = obj in OPTIONAL
    rows, keys, key_of = store.derived("stripe", obj, "newest_first", newest_first, optional=optional)
    try:
        filters = _filters(obj, params)
    except ValueError:
        return _error(400, "Invalid integer: created")
    if filters:
        # Every page of a filtered list asks for the same filter: filter once.
        rows, keys = store.derived(
            "stripe",
            obj,
            f"filtered:{filters}",
            lambda _: _filtered(
                store.derived("stripe", obj, "newest_first", newest_first, optional=optional)[0], filters
            ),
            optional=optional,
        )

    start = 0
    after = params.get("starting_after")
    if after:
        if after not in key_of:
            return _error(400, f"No such object: '{after}'", "invalid_request_error")
        start = bisect.bisect_right(keys, key_of[after])
    page = rows[start : start + limit]
    lookups = Lookups(store)
    if obj == "events":
        data = [{**e, "data": {**e["data"], "object": render(e["data"]["object"], version, lookups)}} for e in page]
    elif era(version) == "clover" and not expanded:
        data = store.fragment("stripe", obj, page)  # the stored shape is the current one
    else:
        # Each object rendered once per version and expansion, then served from its bytes.
        encoded = _encoded(store, obj, version, expanded, optional)
        data = orjson.Fragment(b"[" + b",".join(encoded[id(r)] for r in page) + b"]")
    return 200, {
        "object": "list",
        "url": f"/v1/{obj}",
        "has_more": start + limit < len(rows),
        "data": data,
    }
