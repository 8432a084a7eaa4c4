"""Incremental loads: changes (and only changes) come through; interrupted or repeated
deliveries never lose or duplicate a row."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import duckdb
import pytest

from connectors.pipelines import DATASETS, load, make_pipeline
from data_spine.settings import PROJECT_ROOT, settings
from sample_company.changes import change_sources
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

API_SOURCES = ["stripe", "hubspot", "zendesk"]
CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
}
# The day after the sample company's history ends: when the changes happen.
CHANGED_AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
# Child tables carry one row per parent in the sample company, so they change with it.
CHILDREN = {
    "stripe": {"subscriptions__items__data": "subscriptions", "invoices__lines__data": "invoices"},
    "zendesk": {"tickets__custom_fields": "tickets", "organizations__domain_names": "organizations"},
    "hubspot": {},
}


@pytest.fixture
def private_api(small_company, tmp_path):
    """A copy of the sample company's sources that a test may change, and its own server."""
    sources = tmp_path / "sources"
    shutil.copytree(settings().sources_dir, sources)
    with VendorApiServer(sources) as server:
        yield server, sources


@pytest.fixture
def cfg(tmp_path):
    return dataclasses.replace(settings(), data_dir=tmp_path / "data", warehouse=tmp_path / "data" / "warehouse.duckdb")


def _load(source, server, cfg):
    return load(source, cfg, base_url=server.base_url(source), **CREDENTIALS[source])


def _extracted(source, cfg) -> dict[str, int]:
    counts = make_pipeline(source, cfg).last_trace.last_normalize_info.row_counts
    return {t: n for t, n in counts.items() if not t.startswith("_dlt") and n}


def _query(cfg, sql: str) -> list[tuple]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("source", API_SOURCES)
def test_one_percent_change_loads_only_the_changes(source, private_api, cfg):
    server, sources = private_api
    _load(source, server, cfg)
    changed = change_sources(sources, fraction=0.01, seed=5, at=CHANGED_AT)[source]

    _load(source, server, cfg)
    expected = {obj: len(c.ids) for obj, c in changed.items() if c.ids}
    expected |= {child: expected[parent] for child, parent in CHILDREN[source].items() if parent in expected}
    assert _extracted(source, cfg) == expected
    assert all(n > 0 for n in expected.values())

    schema = DATASETS[source]
    if source == "stripe":
        c = changed["customers"]
        emails = dict(_query(cfg, f"select id, email from {schema}.customers where id in {tuple(c.updated) + ('',)}"))
        assert emails and all(e.startswith("billing@") for e in emails.values())
        assert _query(cfg, f"select id from {schema}.customers where deleted order by id") == [
            (i,) for i in sorted(c.deleted)
        ]
        s = changed["subscriptions"]
        canceled = {r[0] for r in _query(cfg, f"select id from {schema}.subscriptions where status = 'canceled'")}
        assert set(s.deleted) <= canceled
    elif source == "hubspot":
        archived = {r[0] for r in _query(cfg, f"select id from {schema}.contacts where archived")}
        assert set(changed["contacts"].deleted) <= archived and changed["contacts"].deleted
        titles = _query(
            cfg,
            f"select distinct jobtitle from {schema}.contacts where id in {tuple(changed['contacts'].updated) + ('',)}",
        )
        assert titles == [("Director",)]
    else:
        deleted = {r[0] for r in _query(cfg, f"select id from {schema}.tickets where status = 'deleted'")}
        assert deleted == set(changed["tickets"].deleted)
        gone = {r[0] for r in _query(cfg, f"select id from {schema}.organizations where deleted_at is not null")}
        assert gone == set(changed["organizations"].deleted)

    # Nothing duplicated, and the next run has nothing left to read.
    for table in expected:
        if table in changed:
            [(rows, ids)] = _query(cfg, f"select count(*), count(distinct id) from {schema}.{table}")
            assert rows == ids, table
    _load(source, server, cfg)
    assert _extracted(source, cfg) == {}


@pytest.mark.parametrize("source", API_SOURCES)
def test_redelivered_page_changes_nothing(source, private_api, cfg, small_company):
    server, _ = private_api
    server.faults.set(redelivered=2, vendor=source)
    _load(source, server, cfg)
    assert server.faults.faults.redelivered == 0, "no page was redelivered"
    for obj, expected in small_company["counts"][source].items():
        [(rows, ids)] = _query(cfg, f"select count(*), count(distinct id) from {DATASETS[source]}.{obj}")
        assert rows == ids == expected, obj


# --- A load killed at any point is finished or rolled back by the next run ------------------

CRASHING_LOAD = textwrap.dedent(
    """
    import os, signal, sys

    point, source = sys.argv[1], sys.argv[2]
    calls = {"n": 0}

    def die_on(n):
        calls["n"] += 1
        if calls["n"] >= n:
            os.kill(os.getpid(), signal.SIGKILL)

    if point == "extract" and source == "usage_events":  # the new files listed, the query not yet made
        import connectors.usage_events as usage
        usage.native_query = lambda *a, **k: die_on(1)
    elif point == "extract":  # a few pages in
        from connectors.http import ApiClient
        attempt = ApiClient._attempt
        def attempt_then_die(self, *a, **k):
            die_on(4)
            return attempt(self, *a, **k)
        ApiClient._attempt = attempt_then_die
    elif point == "normalize":  # everything extracted, nothing normalized
        from dlt.pipeline.pipeline import Pipeline
        Pipeline.normalize = lambda self, *a, **k: die_on(1)
    elif point == "load":  # some tables already written to the warehouse
        from dlt.common.storages.load_package import PackageStorage
        complete = PackageStorage.complete_job
        def complete_then_die(self, load_id, file_name, *a, **k):
            out = complete(self, load_id, file_name, *a, **k)
            if source != "usage_events":
                die_on(3)
            elif file_name.startswith("events."):  # the one job that writes events
                die_on(1)
            return out
        PackageStorage.complete_job = complete_then_die

    from connectors.pipelines import load
    load(source)
    """
)


@pytest.mark.parametrize("point", ["extract", "normalize", "load"])
@pytest.mark.parametrize("source", ["stripe", "zendesk", "usage_events"])
def test_killed_load_is_finished_by_the_next_run(source, point, private_api, cfg, small_company, tmp_path):
    server, _ = private_api
    env = {
        **os.environ,
        "SPINE_DATA_DIR": str(cfg.data_dir),
        "SPINE_WAREHOUSE": str(cfg.warehouse),
        "SPINE_LANDING_DIR": str(settings().landing_dir),
    }
    if source != "usage_events":
        env[f"SOURCES__{source.upper()}__BASE_URL"] = server.base_url(source)
        for key, value in CREDENTIALS[source].items():
            env[f"SOURCES__{source.upper()}__{key.upper()}"] = value
    script = tmp_path / "crashing_load.py"
    script.write_text(CRASHING_LOAD)
    child = subprocess.run(
        [sys.executable, str(script), point, source], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert child.returncode == -9, f"the load was not killed ({child.returncode}): {child.stderr[-2000:]}"

    schema = DATASETS[source]
    if point == "load":
        # Proof the kill hit mid-load: some rows are in, but the load is not recorded as done.
        [(done,)] = _query(cfg, f"select count(*) from {schema}._dlt_loads")
        assert done == 0

    if source == "usage_events":
        load(source, cfg, landing_dir=str(settings().landing_dir))
    else:
        _load(source, server, cfg)

    system = {"usage_events": "usage"}.get(source, source)
    tables = {"usage_events": {"events": "message_id"}}.get(source) or {
        obj: "id" for obj in small_company["counts"][system]
    }
    for table, key in tables.items():
        [(rows, ids)] = _query(cfg, f"select count(*), count(distinct {key}) from {schema}.{table}")
        assert rows == ids == small_company["counts"][system][table], table
    [(done,)] = _query(cfg, f"select count(*) from {schema}._dlt_loads where status = 0")
    assert done >= 1
