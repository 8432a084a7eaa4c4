"""The benchmark harness runs end to end and reports figures (their values are never asserted:
wall time depends on whatever else the machine is doing)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from data_spine.settings import PROJECT_ROOT
from expectations.suites import SUITES
from sample_company.vendor_api.stripe import OBJECTS as STRIPE_OBJECTS


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`python -m benchmarks` at `tiny`, once, with every group `make bench` runs by default (one
    suite standing for all: each is its own process, alike, and the suites themselves are
    tested on the pipeline's runs; the one with a memory target); it must finish."""
    folder = tmp_path_factory.mktemp("bench")
    groups = ("generate", "usage", "api", "quality", "daily")
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--preset", "tiny", "--data-dir", str(folder)]
        + [f"--only={group}" for group in groups]
        + ["--suite=usage_event"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run, folder


def test_harness_reports_every_measurement(harness):
    run, tmp_path = harness
    results = json.loads((tmp_path / "tiny" / "results.json").read_text())
    measured = results["measurements"]
    suites = ["validate usage_event"]
    assert set(measured) == {
        "generate",
        "duckdb",
        "usage",
        "stripe",
        "hubspot",
        "zendesk",
        "api",
        "build",
        *suites,
        "validate (all)",
    }
    manifest = json.loads((tmp_path / "tiny" / "sources" / "manifest.json").read_text())
    # Every usage event reaches the warehouse, both natively and through the connector.
    assert measured["usage"]["records"] == measured["duckdb"]["records"] == manifest["counts"]["usage"]["events"]
    # Every object a vendor lists (Stripe keeps discounts only to expand them on their parents).
    listed = {"stripe": set(STRIPE_OBJECTS)}
    for source in ("stripe", "hubspot", "zendesk"):
        served = {obj: n for obj, n in manifest["counts"][source].items() if obj in listed.get(source, {obj})}
        assert measured[source]["records"] >= sum(served.values())
    for m in measured.values():
        assert m["seconds"] > 0 and m["peak_rss_mb"] > 0
    assert all(t["target"] for t in measured["usage"]["targets"])
    # The suite ran every check on the warehouse the build step made, none of them in error.
    for entity, suite in [("usage_event", SUITES["usage_event"])]:
        validated = measured[f"validate {entity}"]
        assert validated["detail"]["checks"] == len(suite.checks) and validated["detail"]["errors"] == 0
        assert set(validated["detail"]["tables"]) == set(suite.publishes)
    assert measured["validate usage_event"]["detail"]["tables"]["usage_events"] == manifest["counts"]["usage"]["events"]
    [memory] = measured["validate usage_event"]["targets"]
    assert memory["target"] == "peak RSS ≤ 1,536 MB"
    assert "records/s" in run.stdout


def test_harness_measures_a_full_run_and_the_next_day(harness):
    run, tmp_path = harness
    figures = json.loads((tmp_path / "tiny" / "daily.json").read_text())
    full, daily = figures["full"], figures["daily"]
    assert full["error"] is None and daily["error"] is None
    # Every phase of the pipeline was timed from the Dagster run's own step statistics.
    assert {"ingest", "dbt", "audit", "publish", "scorecard"} <= set(full["phases"]) <= set(daily["phases"]) | {"docs"}
    assert all(p["seconds"] > 0 and p["peak_mb"] > 0 for p in full["phases"].values())
    # The processes are told apart: the pipeline, dbt and the vendor APIs in their own process.
    assert {"spine run", "vendor APIs"} <= set(full["process_peaks_mb"])
    assert any(name.startswith("dbt") for name in full["process_peaks_mb"])
    assert 0 < figures["ratios"]["daily / full"] and 0 < figures["ratios"]["daily dbt / full dbt"]
    # The day added to the company reached the warehouse.
    data = tmp_path / "tiny" / "runs" / "daily" / "data"
    added = date.fromisoformat(json.loads((data / "sources" / "manifest.json").read_text())["as_of"]) - timedelta(
        days=1
    )
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        [(events,)] = con.execute(
            "select count(*) from serving.usage_events where source_file_name like ?", [f"%events_{added}.jsonl.gz"]
        ).fetchall()
    assert events > 0
    assert "daily / full" in run.stdout
