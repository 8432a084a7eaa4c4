"""Stripe's API versions, field by field: one company served in each shape builds the same.

The `tiny` company is served by the local Stripe API as an account pinned to 2024-06-20 (before
the 2025-03-31 changes), to 2025-03-31.basil and to 2025-09-30.clover (the current shape),
loaded by the real connector into a warehouse per version, and built by dbt through staging
and the MRR models. Every change 2025-03-31 and 2025-09-30 made to what we model is checked on
the models that read it; then an account that upgraded mid-history (a full load in the old
shape, changes in the new one) gives the same MRR per customer and month as the same history
loaded in one shape.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
from dbt_runs import passed, run_dbt

from connectors.pipelines import load
from data_spine.settings import settings
from sample_company.changes import change_sources
from sample_company.generate import generate
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

AS_OF = date(2026, 11, 21)
VERSIONS = {"legacy": "2024-06-20", "basil": "2025-03-31.basil", "clover": "2025-09-30.clover"}
# Everything the MRR of a subscription item depends on (all of it Stripe).
SELECT = ["+int_subscription_items_monthly", "+int_stripe__charges"]


def _dbt_build(warehouse: Path) -> str:
    # Seeds and models: the models' own tests run in the pipeline tests.
    result = run_dbt(
        ["build", "--select", *SELECT, "--resource-type", "seed", "--resource-type", "model"],
        warehouse,
        warehouse.parent / "target",
        as_of=AS_OF.isoformat(),
    )
    assert passed(result), result.stdout[-3000:]
    return result.stdout


def _load(server: VendorApiServer, root: Path, api_version: str | None = None) -> Path:
    cfg = replace(settings(), data_dir=root, warehouse=root / "warehouse.duckdb")
    load(
        "stripe",
        cfg,
        base_url=server.base_url("stripe"),
        api_key=DEMO_CREDENTIALS["stripe_api_key"],
        api_version=api_version,
    )
    return cfg.warehouse


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory) -> dict[str, Path]:
    """A warehouse per API version, the upgraded account's (`mixed`) and the same history in one
    shape (`single`), each built by dbt."""
    root = tmp_path_factory.mktemp("stripe-versions")
    sources = root / "company" / "sources"
    generate(sources, root / "company" / "landing", preset="tiny", seed=42, as_of=AS_OF, log=lambda *_: None)
    built: dict[str, Path] = {"sources": sources}
    for name, version in VERSIONS.items():
        with VendorApiServer(sources, stripe_api_version=version) as server:
            built[name] = _load(server, root / name)
    # An account on 2024-06-20 loads its history, upgrades to the current version, and the next
    # day's changes arrive in the new shape.
    with VendorApiServer(sources, stripe_api_version=VERSIONS["legacy"]) as server:
        _load(server, root / "mixed", api_version=VERSIONS["legacy"])
    change_sources(sources, fraction=0.05, seed=3, at=datetime(2026, 11, 22, 9, tzinfo=UTC))
    with VendorApiServer(sources, stripe_api_version=VERSIONS["clover"]) as server:
        built["mixed"] = _load(server, root / "mixed", api_version=VERSIONS["clover"])
        built["single"] = _load(server, root / "single")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_dbt_build, [w for name, w in built.items() if name != "sources"]))
    return built


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _same_everywhere(warehouses: dict[str, Path], sql: str, versions=tuple(VERSIONS)) -> list[tuple]:
    results = {v: _rows(warehouses[v], sql) for v in versions}
    first = results[versions[0]]
    assert first, f"nothing to compare: {sql}"
    for version, rows in results.items():
        assert rows == first, f"{version} differs from {versions[0]} for: {sql}"
    return first


def _served(sources: Path, version: str, path: str) -> dict:
    """One answer of the local Stripe API to an account pinned to `version`."""
    with VendorApiServer(sources, stripe_api_version=version) as server:
        status, body, _, _ = server.route(
            "GET", f"/stripe/{path}", {"Authorization": f"Bearer {DEMO_CREDENTIALS['stripe_api_key']}"}
        )
    assert status == 200
    return orjson.loads(orjson.dumps(body))


def _columns(warehouse: Path, table: str) -> set[str]:
    return {
        r[0]
        for r in _rows(
            warehouse,
            f"select column_name from duckdb_columns() where schema_name = 'raw_stripe' and table_name = '{table}'",
        )
    }


# --- 2025-03-31.basil ----------------------------------------------------------------------


def test_current_period_moved_from_the_subscription_to_its_items(warehouses):
    legacy = _served(warehouses["sources"], "2024-06-20", "v1/subscriptions?limit=1&status=all")["data"][0]
    current = _served(warehouses["sources"], "2025-09-30.clover", "v1/subscriptions?limit=1&status=all")["data"][0]
    assert "current_period_start" in legacy and "current_period_start" not in legacy["items"]["data"][0]
    assert "current_period_start" not in current and "current_period_start" in current["items"]["data"][0]
    rows = _same_everywhere(
        warehouses,
        "select subscription_item_id, current_period_start_at, current_period_end_at"
        " from staging.stg_stripe__subscription_items order by all",
    )
    assert sum(r[1] is not None for r in rows) == len(rows)
    for version in VERSIONS:  # one shape downstream: the period lands on the items
        assert "current_period_start" not in _columns(warehouses[version], "subscriptions")


def test_invoice_names_its_subscription_under_parent_since_2025_03_31(warehouses):
    legacy = _served(warehouses["sources"], "2024-06-20", "v1/invoices?limit=1")["data"][0]
    current = _served(warehouses["sources"], "2025-09-30.clover", "v1/invoices?limit=1")["data"][0]
    assert "parent" not in legacy and legacy["subscription"]
    assert "subscription" not in current and current["parent"]["subscription_details"]["subscription"]
    rows = _same_everywhere(
        warehouses, "select invoice_id, subscription_id from staging.stg_stripe__invoices order by all"
    )
    assert all(subscription for _, subscription in rows)


def test_invoice_lines_name_price_and_item_under_pricing_and_parent_since_2025_03_31(warehouses):
    legacy = _served(warehouses["sources"], "2024-06-20", "v1/invoices?limit=1")["data"][0]["lines"]["data"][0]
    current = _served(warehouses["sources"], "2025-09-30.clover", "v1/invoices?limit=1")["data"][0]["lines"]["data"][0]
    assert legacy["price"]["id"] and legacy["subscription_item"] and legacy["type"] == "subscription"
    assert (
        current["pricing"]["price_details"]["price"]
        and current["parent"]["subscription_item_details"]["subscription_item"]
    )
    _same_everywhere(warehouses, "select * from staging.stg_stripe__invoice_lines order by all")
    [(lines, itemized, priced)] = _same_everywhere(
        warehouses,
        "select count(*), count(subscription_item_id), count(price_id) from staging.stg_stripe__invoice_lines",
    )
    assert lines == itemized == priced > 0


def test_discounts_list_replaces_the_single_discount(warehouses):
    legacy = _served(warehouses["sources"], "2024-06-20", "v1/subscriptions?limit=100&status=all")["data"]
    current = _served(
        warehouses["sources"], "2025-09-30.clover", "v1/subscriptions?limit=100&status=all&expand[]=data.discounts"
    )["data"]
    assert any(s["discount"] for s in legacy) and all("discount" not in s for s in current)
    assert any(isinstance(d, dict) for s in current for d in s["discounts"])  # expanded
    _same_everywhere(
        warehouses,
        "select subscription_id, discount_ids from staging.stg_stripe__subscriptions"
        " where len(discount_ids) > 0 order by all",
    )
    _same_everywhere(
        warehouses,
        "select invoice_id, discount_ids from staging.stg_stripe__invoices where len(discount_ids) > 0 order by all",
    )
    _same_everywhere(warehouses, "select * from staging.stg_stripe__invoice_line_discounts order by all")


def test_charges_link_to_invoices_through_invoice_payments_since_2025_03_31(warehouses):
    for version, linked in (("legacy", True), ("basil", False), ("clover", False)):
        [(charges, with_invoice)] = _rows(
            warehouses[version], "select count(*), count(invoice) from raw_stripe.charges"
        )
        assert (with_invoice == charges) if linked else (with_invoice == 0), version
    rows = _same_everywhere(
        warehouses, "select charge_id, invoice_id from intermediate.int_stripe__charges order by all"
    )
    assert all(invoice for _, invoice in rows)
    assert {
        r[0] for r in _rows(warehouses["legacy"], "select distinct invoice_link from intermediate.int_stripe__charges")
    } == {"charge"}
    assert {
        r[0] for r in _rows(warehouses["clover"], "select distinct invoice_link from intermediate.int_stripe__charges")
    } == {"invoice_payment_intent"}


# --- 2025-09-30.clover ---------------------------------------------------------------------


def test_a_discount_names_its_coupon_in_source_since_2025_09_30(warehouses):
    [(embedded, named)] = _rows(
        warehouses["basil"], "select count(coupon__duration), count(source__coupon) from raw_stripe.discounts"
    )
    assert embedded > 0 and named == 0
    [(embedded, named)] = _rows(
        warehouses["clover"], "select count(coupon__duration), count(source__coupon) from raw_stripe.discounts"
    )
    assert embedded == 0 and named > 0
    rows = _same_everywhere(
        warehouses,
        "select discount_id, coupon_id, coupon_duration, percent_off, amount_off, is_recurring"
        " from intermediate.int_stripe__discounts order by all",
    )
    assert {r[2] for r in rows} == {"once", "repeating", "forever"}


# --- MRR -------------------------------------------------------------------------------------

MRR = (
    "select stripe_customer_id, month, sum(gross_mrr_local), sum(discount_mrr_local), sum(mrr_local)"
    " from intermediate.int_subscription_items_monthly group by all order by all"
)


def test_discounts_reduce_mrr_in_every_shape(warehouses):
    rows = _same_everywhere(warehouses, MRR)
    discounted = [r for r in rows if r[3] > 0]
    assert discounted, "recurring coupons lower some customer-months"
    assert all(r[4] == r[2] - r[3] for r in rows)
    # A once coupon is not MRR: the discount of a month is never the whole one-off credit.
    _same_everywhere(
        warehouses,
        "select count(*), sum(recurring_discount), sum(one_off_discount) from intermediate.int_subscription_item_terms",
    )


def test_an_account_upgraded_mid_history_gives_the_mrr_of_one_shape(warehouses):
    mixed, single = warehouses["mixed"], warehouses["single"]
    # Both shapes are in the upgraded account's raw tables: charges from its first load name
    # their invoice, charges changed since do not.
    [(legacy_rows, current_rows)] = _rows(
        mixed, "select count(invoice), count(*) - count(invoice) from raw_stripe.charges"
    )
    assert legacy_rows > 0 and current_rows > 0
    [(changed,)] = _rows(mixed, "select count(distinct _dlt_load_id) from raw_stripe.subscriptions")
    assert changed == 2, "the changes came in a second, incremental load"
    assert _rows(mixed, MRR) == _rows(single, MRR)
    assert _rows(mixed, "select charge_id, invoice_id from intermediate.int_stripe__charges order by all") == _rows(
        single, "select charge_id, invoice_id from intermediate.int_stripe__charges order by all"
    )
