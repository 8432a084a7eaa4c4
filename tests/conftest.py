"""Test settings: every test works in a private data folder and Dagster instance.

The environment is set before any project module is imported, because the Dagster
definitions read their paths when they are loaded.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="spine-tests-"))
os.environ["SPINE_DATA_DIR"] = str(_ROOT / "data")
os.environ["SPINE_WAREHOUSE"] = str(_ROOT / "data" / "warehouse.duckdb")
os.environ["DAGSTER_HOME"] = str(_ROOT / "dagster_home")
os.environ["SPINE_AS_OF"] = "2026-11-21"
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
(_ROOT / "dagster_home").mkdir(parents=True)
# Same instance settings as the project's (one slot per pool: one DuckDB writer at a time).
(_ROOT / "dagster_home" / "dagster.yaml").write_text(
    (Path(__file__).resolve().parent.parent / ".dagster_home" / "dagster.yaml").read_text()
)

AS_OF = date(2026, 11, 21)
SEED = 42


@pytest.fixture(scope="session")
def spine_root() -> Path:
    return _ROOT


@pytest.fixture(scope="session")
def small_company(spine_root: Path) -> dict:
    """The `small` sample company in the session's data folder (generated once)."""
    from data_spine.config import settings
    from sample_company.generate import generate

    cfg = settings()
    return generate(cfg.sources_dir, cfg.landing_dir, preset="small", seed=SEED, as_of=AS_OF, log=lambda *_: None)


def run_spine_job(**kwargs):
    """`spine_job` in this process against the local vendor APIs, as `spine run` runs it."""
    from data_spine.cli import execute_spine_job, local_vendor_apis

    with local_vendor_apis(port=0):
        return execute_spine_job(**kwargs)


@pytest.fixture(scope="session")
def run_job():
    return run_spine_job


@pytest.fixture(scope="session")
def first_run(small_company):
    """The whole pipeline once on the `small` company with its default defects."""
    result = run_spine_job()
    assert result.success, "spine_job failed"
    return result


@pytest.fixture(scope="session")
def shape_runs(tmp_path_factory) -> dict:
    """The whole pipeline on the `tiny` company in every shape of the variant matrix, with the
    vendors' documented records (tests/pipeline_runs.py), two runs at a time."""
    from pipeline_runs import SHAPES, run_all

    return run_all(SHAPES, tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def clean_tiny(tmp_path_factory):
    """`spine run` once on the clean `tiny` company in a folder of its own: the reference the
    fault tests compare a recovered warehouse with (`pipeline_runs.warehouse_digest`)."""
    from pipeline_runs import Run, Shape, prepare, spine_run, warehouse_digest

    root = tmp_path_factory.mktemp("clean_tiny")
    prepare(root)
    run = Run(Shape("clean", "default"), root)
    run.returncode = spine_run(root, run.log).wait(timeout=900)
    run.output = run.log.read_text()
    assert run.returncode == 0, run.output[-3000:]
    run.digest = warehouse_digest(run.warehouse)
    return run


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`--dist loadgroup`), the tests that share the `small` company's run
    go to one worker together, and every other file to whichever worker is free."""
    for item in items:
        shared = {"small_company", "first_run", "run_job"} & set(item.fixturenames)
        item.add_marker(pytest.mark.xdist_group("small_company" if shared else item.path.stem))
