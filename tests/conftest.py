"""Test settings: every test works in a private data folder and Dagster instance.

Two tiers: `tests/unit` (marker `unit`: no pipeline run, each test in seconds) and
`tests/integration` (marker `integration`: whole `spine run`s, Dagster runs, faults). The
settings are read once per process (`data_spine.settings`), so the session's folders are
put in this test process's environment before the first project module reads them.
"""

from __future__ import annotations

import atexit
import fcntl
import getpass
import json
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import pytest


def _scratch() -> Path | None:
    """Where the tests keep their warehouses, data folders and Dagster instances: a RAM-backed
    folder when the machine has one. Dagster's SQLite run storage and DuckDB sync every commit
    to disk, which costs each pipeline run seconds, and no test's data has to outlive the
    session. SPINE_TEST_TMPDIR chooses another folder ("" for the system's temporary folder)."""
    chosen = os.environ.get("SPINE_TEST_TMPDIR")
    if chosen is not None:
        return Path(chosen) if chosen else None
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


_ROOT = Path(tempfile.mkdtemp(prefix="spine-tests-", dir=_scratch()))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    scratch = _scratch()
    if scratch and config.option.basetemp is None and not hasattr(config, "workerinput"):
        # The session's temporary folders (the workers' are inside it) in the scratch folder,
        # which is memory (a session leaves 1-2 GB): like pytest, only the last three
        # sessions are kept, but none younger than two hours (it may still be running).
        sessions = scratch / f"spine-pytest-of-{getpass.getuser()}"
        sessions.mkdir(exist_ok=True)
        earlier = sorted(sessions.glob("session-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for n, old in enumerate(earlier):
            age = time.time() - old.stat().st_mtime
            if age > 86_400 or (n >= 2 and age > 7_200):
                shutil.rmtree(old, ignore_errors=True)
        config.option.basetemp = tempfile.mkdtemp(prefix="session-", dir=sessions)
    config.addinivalue_line("markers", "unit: no pipeline run, each test in seconds (tests/unit)")
    config.addinivalue_line("markers", "integration: whole pipeline runs, Dagster runs and faults (tests/integration)")
    # Before collection: test modules load the Dagster definitions, which read the dbt
    # manifest (prepared when the dbt project changed; several workers at once: one parses).
    from orchestration.dbt_manifest import prepare

    prepare(as_of=AS_OF)  # the day every test's run describes: their dbt commands start from this parse


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """The dbt manifest the definitions load (prepared in `pytest_configure`)."""
    from orchestration.dbt_manifest import dbt_project

    return dbt_project.manifest_path


@pytest.fixture
def set_env(monkeypatch):
    """Set environment variables for one test and have the settings read them (and the
    session's again afterwards)."""
    from data_spine.settings import settings

    def _set(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()

    yield _set
    monkeypatch.undo()
    settings.cache_clear()


@pytest.fixture(scope="session")
def spine_root() -> Path:
    return _ROOT


@pytest.fixture(scope="session")
def small_company(spine_root: Path) -> dict:
    """The `small` sample company in the session's data folder (generated once)."""
    from data_spine.settings import settings
    from sample_company.generate import generate

    cfg = settings()
    return generate(cfg.sources_dir, cfg.landing_dir, preset="small", seed=SEED, as_of=AS_OF, log=lambda *_: None)


def run_spine_job(**kwargs):
    """`spine_job` in this process against the local vendor APIs, as `spine run` runs it."""
    from command_line.local_vendors import local_vendor_apis
    from command_line.main import execute_spine_job

    with local_vendor_apis(port=0) as (_, vendors):
        return execute_spine_job(vendors=vendors, **kwargs)


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
def clean_tiny(tmp_path_factory, worker_id):
    """`spine run` (the installed command) once on the clean `tiny` company in a folder of its
    own: the clean company's audit (tests/integration/test_quality_acceptance.py) and the
    reference the fault tests compare a recovered warehouse with (`pipeline_runs.warehouse_digest`). Made once
    per session: under pytest-xdist the first worker to need it runs it while the others wait,
    then all read it (nobody writes to it after)."""
    from pipeline_runs import Run, Shape, prepare, spine_run, warehouse_digest

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the folder every worker's base folder is in
    root = shared / "clean_tiny"
    run = Run(Shape("clean", "default"), root)
    done = root / "done.json"
    with open(shared / "clean_tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            prepare(root)
            run.returncode = spine_run(root, run.log, installed=True).wait(timeout=900)
            digest = warehouse_digest(run.warehouse) if run.returncode == 0 else {}
            done.write_text(json.dumps({"returncode": run.returncode, "digest": digest}))
    result = json.loads(done.read_text())
    run.returncode, run.output = result["returncode"], run.log.read_text()
    assert run.returncode == 0, run.output[-3000:]
    run.digest = {table: tuple(value) for table, value in result["digest"].items()}
    return run


# Files whose tests share a session fixture that runs the pipeline go to the same worker, so
# the fixture runs once: the `small` company's run (`first_run`) and the variant matrix
# (`shape_runs`).
SHARED_RUNS = {
    "test_pipeline.py": "small company run",
    "test_quality_acceptance.py": "small company run",
    "test_wap.py": "small company run",
    "test_reports.py": "small company run",
    "test_ask_the_warehouse.py": "small company run",
    "test_served_figures.py": "small company run",
    "test_personal_data_guard.py": "small company run",
    "test_role_access_served.py": "small company run",
    "test_spine_on_postgres.py": "small company run",
    "test_quality_on_postgres.py": "small company run",
    "test_roles_on_postgres.py": "small company run",
    "test_conformance.py": "variant matrix runs",
    "test_variants.py": "variant matrix runs",
}
# The files that take longest (whole pipeline runs; seconds in brackets, measured in a whole
# suite on a 2-core machine), started first, longest first, so that two workers finish
# together rather than one waiting on a long file picked up last.
LONGEST_FIRST = [
    # First of its group: its PostgreSQL run starts before, and runs beside, the small company's
    # DuckDB run (`first_run`), whose marts it is compared with before any test changes them.
    "test_spine_on_postgres.py",
    "test_pipeline.py",  # with test_quality_acceptance.py and test_wap.py (~220)
    "test_quality_acceptance.py",
    "test_wap.py",
    "test_run_recovery.py",  # (~210)
    "test_benchmarks.py",  # (~180)
    "test_failure_isolation.py",  # (~140)
    "test_subject_requests.py",  # (~80, on a copy of the clean tiny run)
    "test_ui_selection.py",  # (~80)
    "test_resource_faults.py",  # (~65)
    "test_conformance.py",  # with test_variants.py (~65)
    "test_variants.py",
    "test_retention.py",  # (~25, on a copy of the clean tiny run)
    "test_incremental_marts.py",  # (~52)
    "test_classification.py",  # (~45)
    "test_alert_delivery.py",  # (~50)
    "test_incremental.py",  # (~48)
    "test_stripe_versions.py",  # (~47)
    "test_hostile_values.py",  # (~40)
    "test_dagster_dev_recovery.py",  # (~40)
    "test_landing_faults.py",  # (~29)
    "test_connectors.py",  # the longest unit file (~29)
    "test_contracts.py",  # (~16)
    "test_event_formats.py",  # (~13)
    "test_alerts.py",  # (~11)
    "test_generator.py",  # (~11)
    "test_event_marts.py",  # (~11)
    "test_http_client.py",  # (~10)
    "test_house.py",  # (~6)
    "test_dagster_storage.py",  # (~2)
]


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = item.path.parent.name
        if tier in ("unit", "integration"):
            item.add_marker(tier)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist, whole files go to a worker (`--dist loadfile`), and the files that
    share a pipeline run (`SHARED_RUNS`) go to the same one, in the order of `LONGEST_FIRST`
    (pytest-xdist would otherwise hand out the files with the most tests first, which leaves
    the long files of a few tests, the fault series, for the end)."""
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False

    class SharedRunScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return SHARED_RUNS.get(Path(file).name, file)

    return SharedRunScheduling(config, log)
