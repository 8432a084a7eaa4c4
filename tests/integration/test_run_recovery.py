"""A killed or interrupted run never blocks the next one, and the next run finishes its work.

One data folder goes through a series of faults, each `spine run` started in a session of
its own (so a signal reaches all its processes, dbt included, as a terminal's would):

1. Ctrl-C (SIGINT once) during the dbt step: the run stops within 30 s, says so in one line,
   is CANCELED in the instance and leaves no pool slot claimed;
2. SIGKILL at ingest, audit, publish, scorecard and dbt in turn, each in the run that follows
   the previous fault: every run reports the run killed before it as recovered, and after each
   kill every entity in `serving` is one audited version (never half published);
3. a last run finishes (exit 0) with a warehouse equal, table for table, to a clean run's.

Under `dagster dev`: tests/integration/test_dagster_dev_recovery.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.events import DagsterEventType
from pipeline_runs import claimed_slots, instance_of, prepare, spine_run, warehouse_digest

from expectations.runner import table_fingerprint
from expectations.suites import SUITES
from orchestration.run_recovery import steps_in_flight

RUN_SECONDS = 600
CANCEL_SECONDS = 30
# The step each fault waits for (prefix of its step key); dbt comes last, so the final run is
# the one that recovers a run killed during dbt.
KILLS = ("ingest_", "audit__", "publish_", "scorecard", "dbt_models")


def _wait_for_step(
    instance: dg.DagsterInstance, process: subprocess.Popen, log: Path, prefix: str, known: set[str]
) -> str:
    """The id of the new run once one of its steps starting with `prefix` has started."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"spine run ended before {prefix}:\n{log.read_text()[-3000:]}"
        runs = [r for r in instance.get_runs(limit=3) if r.run_id not in known]
        if runs:
            starts = instance.all_logs(runs[0].run_id, of_type=DagsterEventType.STEP_START)
            if any(e.step_key and e.step_key.startswith(prefix) for e in starts):
                return runs[0].run_id
        time.sleep(0.05)  # often enough to catch the shortest step (6 publish steps: 0.6 s)
    pytest.fail(f"no step {prefix}* within {RUN_SECONDS} s:\n{log.read_text()[-3000:]}")


def _wait_for_dbt(process: subprocess.Popen, log: Path) -> None:
    """Until dbt itself is under way: its first line is out (before it, the dbt process is
    still starting Python, where an interrupt ends it with Python's own traceback)."""
    deadline = time.monotonic() + RUN_SECONDS
    while "Running with dbt=" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    time.sleep(0.5)


def _wait_until_gone(group: int, timeout: float = 60) -> None:
    """Until every process of the killed command's group has exited, as after a terminal's
    Ctrl-C or a machine's kill: its main process ends first, the others (dbt, the vendor APIs'
    server, a step's worker) a moment later, and one of them may still hold the warehouse."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of group {group} still running {timeout:.0f}s after it was stopped")


def half_published(warehouse: Path) -> list[str]:
    """Entities whose `serving` tables are not exactly the marts one audit saw: for each
    entity, the tables of its latest publication must all hold what that publication's audit
    fingerprinted (`quality.audits`), and no serving table may lack a publication."""
    problems = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        serving = {
            t for (t,) in con.execute("select table_name from duckdb_tables() where schema_name = 'serving'").fetchall()
        }
        has_publications = con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'quality' and table_name = 'publications'"
        ).fetchone()[0]
        if not has_publications:
            return [f"serving.{t} exists without any publication" for t in sorted(serving)]
        latest = con.execute(
            "select entity, audit_run_id from quality.publications where status = 'published' "
            "qualify row_number() over (partition by entity order by decided_at desc) = 1"
        ).fetchall()
        published: set[str] = set()
        for entity, audit_run in latest:
            audited = json.loads(
                con.execute(
                    "select fingerprints from quality.audits where entity = ? and run_id = ? "
                    "order by audited_at desc limit 1",
                    [entity, audit_run],
                ).fetchone()[0]
            )
            for table, expected in audited.items():
                published.add(table)
                # As publishing fingerprints it (an incremental mart by key and refreshed_at).
                if table_fingerprint(con, f"serving.{table}", SUITES[entity].key_of(table)) != expected:
                    problems.append(f"{entity}: serving.{table} is not the version audited in run {audit_run}")
        problems += [f"serving.{t} exists without a publication" for t in sorted(serving - published)]
    return problems


@dataclass
class Fault:
    step: str
    run_id: str
    output: str = ""  # output of the run that started after this fault
    status: dg.DagsterRunStatus | None = None  # as the kill left it
    last_step: str = ""  # the last step it started
    in_flight: list[str] = field(default_factory=list)
    half_published: list[str] = field(default_factory=list)


@dataclass
class Series:
    root: Path
    cancel_seconds: float = 0.0
    cancel_returncode: int = 0
    cancel_output: str = ""
    cancel_run: dg.DagsterRun | None = None
    cancel_claimed: list = field(default_factory=list)
    kills: list[Fault] = field(default_factory=list)
    final_returncode: int = -1
    final_output: str = ""


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Series:
    root = tmp_path_factory.mktemp("run_recovery")
    prepare(root)
    instance = instance_of(root)
    result = Series(root)
    known: set[str] = set()
    processes: list[subprocess.Popen] = []
    try:
        # 1. Ctrl-C during dbt.
        log = root / "cancel.log"
        process = spine_run(root, log, new_session=True)
        processes.append(process)
        run_id = _wait_for_step(instance, process, log, "dbt_models", known)
        known.add(run_id)
        _wait_for_dbt(process, log)
        interrupted = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        result.cancel_returncode = process.wait(timeout=120)
        result.cancel_seconds = time.monotonic() - interrupted
        _wait_until_gone(process.pid)
        result.cancel_output = log.read_text()
        result.cancel_run = instance.get_run_by_id(run_id)
        result.cancel_claimed = claimed_slots(instance)

        # 2. SIGKILL at each step, each in the run after the previous fault.
        for n, step in enumerate(KILLS):
            log = root / f"kill_{n}_{step.strip('_')}.log"
            process = spine_run(root, log, new_session=True)
            processes.append(process)
            run_id = _wait_for_step(instance, process, log, step, known)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            _wait_until_gone(process.pid)
            known.add(run_id)
            if result.kills:
                result.kills[-1].output = log.read_text()
            result.kills.append(
                Fault(
                    step,
                    run_id,
                    status=instance.get_run_by_id(run_id).status,
                    last_step=instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)[-1].step_key,
                    in_flight=steps_in_flight(instance, run_id),
                    half_published=half_published(root / "data" / "warehouse.duckdb"),
                )
            )

        # 3. A run to the end.
        log = root / "final.log"
        process = spine_run(root, log, new_session=True)
        processes.append(process)
        result.final_returncode = process.wait(timeout=RUN_SECONDS)
        result.final_output = result.kills[-1].output = log.read_text()
        return result
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)


@pytest.mark.timeout(1800)  # the whole series of runs starts here
def test_one_ctrl_c_during_dbt_cancels_the_run_in_one_line(series):
    output = series.cancel_output
    assert series.cancel_returncode == 130, output[-3000:]
    assert series.cancel_seconds < CANCEL_SECONDS
    cancel_lines = [line for line in output.splitlines() if re.search(r"cancel", line, re.IGNORECASE)]
    assert len(cancel_lines) == 1, cancel_lines
    assert cancel_lines[0].startswith("spine run cancelled: Dagster run ") and "dbt_models" in cancel_lines[0]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert series.cancel_run.status == dg.DagsterRunStatus.CANCELED
    assert series.cancel_claimed == []
    # The run after it was not held back: it reached the step it was killed at.
    assert series.kills[0].run_id != series.cancel_run.run_id


def test_a_kill_at_each_step_never_leaves_serving_half_published(series):
    assert [fault.step for fault in series.kills] == list(KILLS)
    for fault in series.kills:
        # Killed mid-run, at (or just after: publish and scorecard steps take milliseconds) the step.
        assert fault.status == dg.DagsterRunStatus.STARTED, (fault.step, fault.status)
        assert fault.last_step.startswith(fault.step), (fault.step, fault.last_step)
        assert fault.half_published == [], (fault.step, fault.half_published)


def test_each_run_reports_the_run_killed_before_it(series):
    for fault in series.kills:
        recovered = [line for line in fault.output.splitlines() if line.startswith("Recovered run ")]
        assert len(recovered) == 1, (fault.step, recovered)
        assert recovered[0].startswith(f"Recovered run {fault.run_id} (started ")
        assert "its process died during " in recovered[0] and fault.last_step in recovered[0], recovered[0]
        assert "; marked failed, " in recovered[0], recovered[0]
    dbt = series.kills[-1]
    assert dbt.in_flight == ["dbt_models"]
    assert "its process died during dbt_models; marked failed, warehouse slot freed" in next(
        line for line in dbt.output.splitlines() if line.startswith("Recovered run ")
    )
    instance = instance_of(series.root)
    for fault in series.kills:
        assert instance.get_run_by_id(fault.run_id).status == dg.DagsterRunStatus.FAILURE


def test_after_a_kill_during_dbt_the_next_run_finishes_with_a_clean_warehouse(series, clean_tiny):
    assert series.kills[-1].step == "dbt_models"
    assert series.final_returncode == 0, series.final_output[-3000:]
    assert f"Recovered run {series.kills[-1].run_id} " in series.final_output
    assert warehouse_digest(series.root / "data" / "warehouse.duckdb") == clean_tiny.digest
    assert half_published(series.root / "data" / "warehouse.duckdb") == []
    assert claimed_slots(instance_of(series.root)) == []
