"""The benchmark harness runs end to end and reports figures (their values are never asserted:
wall time depends on whatever else the machine is doing)."""

from __future__ import annotations

import json
import subprocess
import sys

from data_spine.settings import PROJECT_ROOT
from expectations.suites import SUITES
from sample_company.vendor_api.stripe import OBJECTS as STRIPE_OBJECTS


def test_harness_reports_every_measurement(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--preset", "tiny", "--data-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((tmp_path / "tiny" / "results.json").read_text())
    measured = results["measurements"]
    suites = [f"validate {entity}" for entity in SUITES]
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
    # Every suite ran every check on the warehouse the build step made, none of them in error.
    for entity, suite in SUITES.items():
        validated = measured[f"validate {entity}"]
        assert validated["detail"]["checks"] == len(suite.checks) and validated["detail"]["errors"] == 0
        assert set(validated["detail"]["tables"]) == set(suite.publishes)
    assert measured["validate usage_event"]["detail"]["tables"]["usage_events"] == manifest["counts"]["usage"]["events"]
    [memory] = measured["validate usage_event"]["targets"]
    assert memory["target"] == "peak RSS ≤ 1,536 MB"
    assert "records/s" in run.stdout
