"""Each connector, run against the local vendor APIs, loads exactly what the source holds,
and rides out the faults real APIs show (rate limits, 5xx bursts, truncated bodies)."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from connectors.http import SourceRequestError
from connectors.pipelines import DATASETS, load, make_pipeline, make_source
from data_spine.config import settings
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
    "usage_events": {},
}
# Raw tables per source and the manifest entry each must match.
EXPECTED = {
    "stripe": {t: ("stripe", t) for t in ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")}
    | {"subscriptions__items__data": ("stripe", "subscriptions")},
    "hubspot": {t: ("hubspot", t) for t in ("companies", "contacts", "deals")},
    "zendesk": {t: ("zendesk", t) for t in ("organizations", "users", "tickets", "ticket_metrics", "satisfaction_ratings")},
    "usage_events": {"events": ("usage", "events")},
}


API_SOURCES = ["stripe", "hubspot", "zendesk"]


@pytest.fixture(scope="module")
def api(small_company):
    with VendorApiServer(settings().sources_dir) as server:
        yield server


@pytest.fixture
def fresh(tmp_path, monkeypatch, api):
    """Settings with a private warehouse, fast retries, and a well-behaved API afterwards."""
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "4")
    cfg = dataclasses.replace(settings(), data_dir=tmp_path, warehouse=tmp_path / "warehouse.duckdb")
    yield cfg
    api.faults.clear()


def _source(source: str, api: VendorApiServer, **extra):
    overrides = dict(CREDENTIALS[source])
    if source != "usage_events":
        overrides["base_url"] = api.base_url(source)
    overrides.update(extra)
    return make_source(source, **overrides)


def _counts(schema: str, warehouse=None) -> dict[str, int]:
    with duckdb.connect(str(warehouse or settings().warehouse), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "select table_name from duckdb_tables() where schema_name = ? and table_name not like '\\_dlt%' escape '\\'",
            [schema],
        ).fetchall()]
        return {t: con.execute(f'select count(*) from "{schema}"."{t}"').fetchone()[0] for t in tables}


@pytest.mark.parametrize("source", list(DATASETS))
def test_connector_loads_every_record_once(source, api, small_company):
    pipeline = make_pipeline(source)
    pipeline.run(_source(source, api))
    counts = _counts(DATASETS[source])
    for table, (system, obj) in EXPECTED[source].items():
        assert counts.get(table) == small_company["counts"][system][obj], f"{source}.{table}"

    # A second run with no change in the source adds no row, and the incremental sources
    # (Zendesk exports, the landing folder) do not even extract anything new.
    pipeline.run(_source(source, api))
    assert _counts(DATASETS[source]) == counts
    if source in ("zendesk", "usage_events"):
        extracted = pipeline.last_trace.last_normalize_info.row_counts
        data_rows = {t: n for t, n in extracted.items() if not t.startswith("_dlt")}
        incremental = {"zendesk": ("tickets", "users"), "usage_events": ("events",)}[source]
        assert all(data_rows.get(t, 0) == 0 for t in incremental), data_rows


def _load(source, api, cfg, **extra):
    overrides = dict(CREDENTIALS[source], base_url=api.base_url(source), **extra)
    return load(source, cfg, **overrides)


def _assert_exact_counts(source, cfg, manifest):
    counts = _counts(DATASETS[source], cfg.warehouse)
    for table, (system, obj) in EXPECTED[source].items():
        assert counts.get(table) == manifest["counts"][system][obj], f"{source}.{table}"


@pytest.mark.parametrize("source", API_SOURCES)
def test_rate_limit_waits_as_long_as_retry_after_says(source, api, fresh, small_company):
    api.faults.set(rate_limited=2, retry_after=1, vendor=source)
    start = len(api.log)
    _load(source, api, fresh)
    _assert_exact_counts(source, fresh, small_company)

    mine = [r for r in api.log[start:] if r.vendor == source]
    assert [r.status for r in mine[:3]] == [429, 429, 200]
    # The backoff alone (factor 0.05) would retry within 0.1 s: the wait is the header's.
    assert mine[1].at - mine[0].at >= 0.95 and mine[2].at - mine[1].at >= 0.95


def test_sustained_rate_limit_slows_the_load_but_loses_nothing(api, fresh, small_company):
    api.faults.set(requests_per_second=10, vendor="hubspot")
    start = len(api.log)
    _load("hubspot", api, fresh)
    _assert_exact_counts("hubspot", fresh, small_company)
    statuses = [r.status for r in api.log[start:]]
    assert statuses.count(429) >= 1 and statuses[-1] == 200


@pytest.mark.parametrize("source", API_SOURCES)
def test_burst_of_server_errors_is_retried(source, api, fresh, small_company):
    api.faults.set(server_errors=3, vendor=source)
    start = len(api.log)
    _load(source, api, fresh)
    _assert_exact_counts(source, fresh, small_company)
    assert [r.status for r in api.log[start:]][:4] == [503, 503, 503, 200]


@pytest.mark.parametrize("source", API_SOURCES)
def test_truncated_body_is_read_again(source, api, fresh, small_company):
    api.faults.set(truncated=2, vendor=source)
    start = len(api.log)
    _load(source, api, fresh)
    _assert_exact_counts(source, fresh, small_company)
    first_path = api.log[start].path
    # The same page was asked for three times: twice cut short, then whole.
    assert [r.path for r in api.log[start : start + 3]] == [first_path] * 3


def test_persistent_failure_names_source_endpoint_and_status(api, fresh):
    api.faults.set(server_errors=10**6, vendor="stripe")
    with pytest.raises(SourceRequestError, match=r"^stripe: GET /stripe/v1/\w+ answered HTTP 503: ") as info:
        _load("stripe", api, fresh)
    assert info.value.status == 503
    assert len([r for r in api.log if r.status == 503]) >= 4  # every attempt was made


@pytest.mark.parametrize("source", API_SOURCES)
def test_bad_credentials_fail_with_source_endpoint_and_status(source, api, fresh):
    bad = {"stripe": {"api_key": "sk_wrong"}, "hubspot": {"token": "wrong"}, "zendesk": {"api_token": "wrong"}}[source]
    start = len(api.log)
    with pytest.raises(SourceRequestError, match=rf"^{source}: GET /{source}/\S+ answered HTTP 401: check the credentials"):
        _load(source, api, fresh, **bad)
    assert [r.status for r in api.log[start:]] == [401]  # a 401 is not worth retrying
