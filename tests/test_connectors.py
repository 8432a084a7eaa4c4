"""Each connector, run against the local vendor APIs, loads exactly what the source holds."""

from __future__ import annotations

import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from connectors.pipelines import DATASETS, make_pipeline, make_source
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


@pytest.fixture(scope="module")
def api(small_company):
    with VendorApiServer(settings().sources_dir) as server:
        yield server


def _source(source: str, api: VendorApiServer, **extra):
    overrides = dict(CREDENTIALS[source])
    if source != "usage_events":
        overrides["base_url"] = api.base_url(source)
    overrides.update(extra)
    return make_source(source, **overrides)


def _counts(schema: str) -> dict[str, int]:
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
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


@pytest.mark.parametrize("source", ["stripe", "hubspot", "zendesk"])
def test_bad_credentials_fail_with_the_status(source, api, tmp_path):
    bad = {"stripe": {"api_key": "sk_wrong"}, "hubspot": {"token": "wrong"}, "zendesk": {"api_token": "wrong"}}[source]
    pipeline = make_pipeline(source).drop()
    with pytest.raises(PipelineStepFailed, match="401"):
        pipeline.extract(_source(source, api, **bad))
