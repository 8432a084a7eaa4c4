"""Resource faults: a disk that fills mid-load, a data folder that is read-only or cannot be
created, a warehouse another process holds, and vendor APIs that answer a share of requests
with 503 and 429.

Each ends `spine run` in one line naming the path and what to do, exit status 1, no traceback,
and nothing corrupted: a warehouse the fault hit equals a clean run's once the fault is gone.
The runs work in folders of their own (tests/pipeline_runs.py); the light ones run side by
side. Disks are tmpfs mounts, which need root: without it those tests are skipped.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_runs import Run, Shape, prepare, spine_env, spine_run, warehouse_digest

from data_spine.settings import PROJECT_ROOT, settings

API_SCHEMAS = ("raw_stripe", "raw_hubspot", "raw_zendesk")
FREE_MIB_WHEN_FULL = 4  # what the full disk leaves for the load: far less than a tiny run writes


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _can_mount(tmp_path_factory) -> bool:
    probe = tmp_path_factory.mktemp("probe") / "disk"
    try:
        _mount_tmpfs(probe, "size=1m")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    _umount(probe)
    return True


def _used_kib(path: Path) -> int:
    return sum(f.stat().st_blocks for f in path.rglob("*") if f.is_file()) // 2


def _new_home(root: Path) -> None:
    """A Dagster instance of its own under `root`, for a data folder copied from another run."""
    (root / "dagster_home").mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", root / "dagster_home" / "dagster.yaml")


def _finish(run: Run, process: subprocess.Popen) -> Run:
    run.returncode = process.wait(timeout=600)
    run.output = run.log.read_text()
    return run


def _said(run: Run) -> list[str]:
    """The lines `spine run` ended with to say what went wrong."""
    return [line for line in run.output.splitlines() if line.startswith("spine run:")]


def _assert_one_clear_line(run: Run, *words: str) -> str:
    assert run.returncode == 1, run.output[-3000:]
    assert "Traceback (most recent call last)" not in run.output, run.output
    assert "Stack Trace:" not in run.output, run.output
    said = _said(run)
    assert len(said) == 1, run.output[-3000:]
    for word in words:
        assert word in said[0], said[0]
    return said[0]


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    """tmpfs mounts made by the tests, unmounted at the end whatever happened."""
    if not _can_mount(tmp_path_factory):
        pytest.skip("mounting tmpfs needs root")
    made: list[Path] = []
    yield made
    for path in reversed(made):
        _umount(path)


@pytest.fixture(scope="module")
def faulted_runs(clean_tiny, mounts, tmp_path_factory):
    """`spine run` once under each fault, side by side: a data folder on a disk with
    FREE_MIB_WHEN_FULL left, one on a read-only disk, one whose parent is a file, and a warehouse
    a DuckDB connection in another process holds."""
    base = tmp_path_factory.mktemp("resource_faults")
    started: dict[str, tuple[Run, subprocess.Popen]] = {}

    full = base / "full"
    mounts.append(full / "data")
    _mount_tmpfs(full / "data", "size=256m")
    prepare(full)
    inputs = _used_kib(full / "data")
    subprocess.run(
        ["mount", "-o", f"remount,size={inputs + FREE_MIB_WHEN_FULL * 1024}k", str(full / "data")], check=True
    )
    started["full"] = (run := Run(Shape("full", "default"), full), spine_run(full, run.log))

    read_only = base / "read_only"
    mounts.append(read_only / "data")
    _mount_tmpfs(read_only / "data", "size=256m")
    shutil.copytree(clean_tiny.root / "data", read_only / "data", dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only / "data")], check=True)
    _new_home(read_only)
    started["read_only"] = (run := Run(Shape("read_only", "default"), read_only), spine_run(read_only, run.log))

    uncreatable = base / "uncreatable"
    _new_home(uncreatable)
    (uncreatable / "not_a_folder").write_text("a file where the data folder's parent should be\n")
    data = uncreatable / "not_a_folder" / "data"
    env = spine_env(uncreatable, SPINE_DATA_DIR=str(data), SPINE_WAREHOUSE=str(data / "warehouse.duckdb"))
    started["uncreatable"] = (
        run := Run(Shape("uncreatable", "default"), uncreatable),
        spine_run(uncreatable, run.log, env=env),
    )

    locked = base / "locked"
    shutil.copytree(clean_tiny.root / "data", locked / "data")
    _new_home(locked)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True); sys.stdin.read()",
            str(locked / "data" / "warehouse.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        # A short wait for the lock, so the run gives up quickly.
        env = spine_env(locked, SPINE_LOCK_RETRIES="1", SPINE_LOCK_RETRY_SECONDS="0.2")
        run = Run(Shape("locked", "default"), locked)
        started["locked"] = (run, spine_run(locked, run.log, env=env))
        runs = {name: _finish(run, process) for name, (run, process) in started.items()}
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    runs["locked"].documented["holder_pid"] = holder.pid
    return runs


def test_full_disk_mid_load_says_so_in_one_line_and_a_rerun_with_space_equals_a_clean_run(faulted_runs, clean_tiny):
    run = faulted_runs["full"]
    data = run.root / "data"
    line = _assert_one_clear_line(run, "no space left on device", str(data), f"df -h {data}")
    assert len(run.output.splitlines()) < 100, run.output  # a screen, not hundreds of lines of traceback
    # The load had started: the disk filled under it, not before it.
    assert "Loading " in run.output, run.output

    # The terminal has one line per failed step; the run's event log keeps the whole error.
    import dagster as dg

    with dg.DagsterInstance.from_config(str(run.root / "dagster_home")) as instance:
        (record,) = instance.get_run_records(dg.RunsFilter(job_name="spine_job"))
        failures = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        errors = [event.dagster_event.step_failure_data.error.to_string() for event in failures]
    assert errors and any("No space left on device" in e and "Stack Trace" in e for e in errors), errors

    subprocess.run(["mount", "-o", "remount,size=256m", str(data)], check=True)
    log = run.root / "rerun.log"
    returncode = spine_run(run.root, log).wait(timeout=600)
    assert returncode == 0, f"{line}\n{log.read_text()[-3000:]}"
    assert warehouse_digest(run.warehouse) == clean_tiny.digest


def test_read_only_data_folder_says_so_in_one_line_and_changes_nothing(faulted_runs, clean_tiny):
    run = faulted_runs["read_only"]
    _assert_one_clear_line(run, "read-only file system", str(run.root / "data"), "run again")
    assert warehouse_digest(run.warehouse) == clean_tiny.digest


def test_data_folder_that_cannot_be_created_says_so_in_one_line(faulted_runs):
    run = faulted_runs["uncreatable"]
    line = _assert_one_clear_line(run, "cannot create", str(run.root / "not_a_folder" / "data"))
    assert f"{run.root / 'not_a_folder'} does not exist or is not a folder" in line
    assert (run.root / "not_a_folder").is_file()


def test_warehouse_locked_by_another_process_waits_then_says_so_in_one_line(faulted_runs, clean_tiny):
    run = faulted_runs["locked"]
    _assert_one_clear_line(
        run, "locked by another process", str(run.warehouse), f"PID {run.documented['holder_pid']}", "close it"
    )
    # Every step that opens the warehouse waited for the lock before giving up, loads included.
    assert "ingest_stripe: The warehouse is locked by another process; retrying in 0.2 s" in run.output
    assert warehouse_digest(run.warehouse) == clean_tiny.digest


def test_load_under_fault_rates_on_every_vendor_api_equals_a_clean_load(clean_tiny, tmp_path, monkeypatch):
    """20% of requests answered 503 and 10% 429 (with Retry-After), on all three APIs at once:
    the connectors retry until they have every page, and load exactly what a clean load did."""
    from connectors.pipelines import load
    from sample_company.generate import read_manifest
    from sample_company.variants import Variant
    from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer
    from sample_company.vendor_api.faults import parse_fault_options

    # Retries without the production backoff (1 s, 2 s, 4 s ...), and enough of them that a
    # page failing at 30% every time is out of reach (0.3^12).
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "12")
    sources = clean_tiny.root / "data" / "sources"
    cfg = dataclasses.replace(settings(), data_dir=tmp_path, warehouse=tmp_path / "warehouse.duckdb")
    credentials = {
        "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
        "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
        "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
    }
    stripe_version = Variant.from_manifest(read_manifest(sources)).stripe_api
    with VendorApiServer(sources, stripe_api_version=stripe_version) as api:
        # As `spine serve --fault ...` takes them.
        api.faults.set(**parse_fault_options(("server_error_rate=0.2", "rate_limit_rate=0.1", "seed=7")))
        for source, creds in credentials.items():
            load(source, cfg, base_url=api.base_url(source), **creds)
        statuses = [request.status for request in api.log]
        failed_vendors = {request.vendor for request in api.log if request.status in (429, 503)}

    assert failed_vendors == set(credentials)
    assert statuses.count(503) >= 5 and statuses.count(429) >= 2, statuses
    assert 0.1 < (statuses.count(503) + statuses.count(429)) / len(statuses) < 0.5, statuses
    assert warehouse_digest(cfg.warehouse, API_SCHEMAS) == warehouse_digest(clean_tiny.warehouse, API_SCHEMAS)


def test_fault_rates_are_shares_drawn_from_a_seed():
    from sample_company.vendor_api.faults import FaultInjector, parse_fault_options

    def answers(seed: int) -> list:
        injector = FaultInjector()
        injector.set(**parse_fault_options(("server_error_rate=0.2", "rate_limit_rate=0.1", f"seed={seed}")))
        return [injector.judge("stripe").status for _ in range(5000)]

    first = answers(7)
    assert first == answers(7)
    assert first != answers(8)
    assert first.count(503) / len(first) == pytest.approx(0.2, abs=0.03)
    assert first.count(429) / len(first) == pytest.approx(0.1, abs=0.03)
    with pytest.raises(ValueError, match="shares"):
        FaultInjector().set(server_error_rate=0.8, rate_limit_rate=0.3)
