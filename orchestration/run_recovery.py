"""Runs whose process died, and runs the user interrupts.

A run whose process is killed (SIGKILL, a lost machine) never records its end: it stays
STARTED in the Dagster instance and keeps its slot in the `duckdb_warehouse` pool, whose
single slot then makes every later run wait forever. Two things find such runs:

- under `dagster dev`, the daemon's run monitoring (`.dagster_home/dagster.yaml`) asks the run
  launcher whether each run's worker is alive. Dagster's `DefaultRunLauncher` cannot tell, so
  `LocalRunLauncher` answers by looking at the worker's process; the run is then marked failed
  and the daemon frees its slots (`free_slots_after_run_end_seconds`);
- `spine run` calls `recover_dead_runs` before it starts, since no daemon may be running.

Both judge a run by the process that executes it: the pid on its RUN_START event (a run
worker launched by the daemon, or `spine run` executing in process), else the pid `spine run`
tags its runs with. A pid can be reused by a later process, so the process only counts as the
run's if it started before the run did. Workers are judged on this machine, where
`DefaultRunLauncher` starts them.

An interrupt (Ctrl-C, SIGTERM) is, to Dagster, a failure unless the run was asked to cancel
first; `CancelOnInterrupt` records that request when a step is interrupted, so an interrupted
run ends CANCELED.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType, JobFailureData, RunFailureReason
from dagster._core.execution.plan.objects import ErrorSource
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRunStatus, RunRecord, RunsFilter

from data_spine.settings import settings

# Set by `spine run` on its runs: the pid of the process executing them, known before the
# run records its RUN_START event.
PID_TAG = "spine/pid"

# /proc gives a process's start in clock ticks since boot, and the boot time in whole seconds.
_START_SLACK_SECONDS = 2.0

UNFINISHED = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
_STEP_ENDS = {
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
    DagsterEventType.STEP_UP_FOR_RETRY,
}


def process_started_at(pid: int) -> float | None:
    """When the process `pid` started (epoch seconds), or None when there is no such live
    process (a zombie, killed but not yet reaped by its parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start_ticks = fields[0], int(fields[19])
    if state in ("Z", "X"):
        return None
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Worker:
    pid: int
    since: float  # the run was known to be running in that process by this time (epoch seconds)

    @property
    def alive(self) -> bool:
        started = process_started_at(self.pid)
        return started is not None and started <= self.since + _START_SLACK_SECONDS


def worker(instance: dg.DagsterInstance, record: RunRecord) -> Worker | None:
    """The process executing the run, if it is known."""
    run = record.dagster_run
    starts = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
    if starts and starts[-1].dagster_event and starts[-1].dagster_event.pid:
        return Worker(starts[-1].dagster_event.pid, starts[-1].timestamp)
    if run.tags.get(PID_TAG, "").isdigit():
        return Worker(int(run.tags[PID_TAG]), record.create_timestamp.timestamp())
    return None


def is_dead(instance: dg.DagsterInstance, record: RunRecord) -> bool:
    """Whether an unfinished run's process is gone. A run with no known process yet (queued,
    being launched) is left to the start timeout of the instance's run monitoring."""
    found = worker(instance, record)
    if found is not None:
        return not found.alive
    if record.dagster_run.status in (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING):
        age = datetime.now(UTC).timestamp() - record.create_timestamp.timestamp()
        return age > instance.run_monitoring_start_timeout_seconds
    return False


def steps_in_flight(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The steps the run started and never ended, in the order they started."""
    started: dict[str, None] = {}
    for entry in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, *_STEP_ENDS}):
        if entry.step_key is None or entry.dagster_event is None:
            continue
        if entry.dagster_event.event_type == DagsterEventType.STEP_START:
            started[entry.step_key] = None
        else:
            started.pop(entry.step_key, None)
    return list(started)


def interrupted_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The steps of the run that failed because they were interrupted."""
    return [
        entry.step_key
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        if entry.step_key
        and entry.dagster_event
        and entry.dagster_event.step_failure_data.error_source == ErrorSource.INTERRUPT
    ]


def _during(instance: dg.DagsterInstance, run_id: str) -> str:
    """Where the run was when its process died: the steps under way, else the last step it began."""
    steps = steps_in_flight(instance, run_id)
    if steps:
        return ", ".join(steps)
    starts = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
    return f"the pause after {starts[-1].step_key}" if starts else "start-up"


def _slot_note(freed: bool) -> str:
    # Every pool of the spine guards the warehouse (`WAREHOUSE_POOL`).
    return "warehouse slot freed" if freed else "it held no warehouse slot"


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    """Runs that claim a pool slot or wait in a pool's queue."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    return storage.get_concurrency_run_ids() | {
        slot.run_id
        for key in storage.get_concurrency_keys()
        for slot in storage.get_concurrency_info(key).claimed_slots
    }


def free_slots(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Free every pool slot the run claimed or waits for; whether it held any."""
    held = run_id in _slot_holders(instance)
    if held:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return held


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """End every unfinished run of the instance whose process is gone (failed; canceled if it
    was being canceled), free the pool slots of those runs and of runs that ended without
    freeing theirs, and say what was done, one line per run."""
    lines = []
    for record in instance.get_run_records(RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        if not is_dead(instance, record):
            continue
        during = _during(instance, run.run_id)
        message = f"The process running this run died during {during} (found by a later run)."
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
            verdict = "marked canceled"
        else:
            instance.report_run_failed(
                run, message, JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION)
            )
            verdict = "marked failed"
        freed = free_slots(instance, run.run_id)
        started = record.start_time or record.create_timestamp.timestamp()
        lines.append(
            f"Recovered run {run.run_id} (started {_when(started)}): its process died during "
            f"{during}; {verdict}, {_slot_note(freed)}"
        )
    leftover = _slot_holders(instance)
    if leftover:
        for record in instance.get_run_records(RunsFilter(run_ids=sorted(leftover), statuses=FINISHED_STATUSES)):
            if free_slots(instance, record.dagster_run.run_id):
                lines.append(
                    f"Freed the warehouse slot run {record.dagster_run.run_id} still held after it "
                    f"ended ({record.dagster_run.status.value.lower()})"
                )
    return lines


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class LocalRunLauncher(dg.DefaultRunLauncher):
    """Dagster's default launcher (a run worker process per run, started by the code server on
    this machine) that can also tell the daemon's run monitoring whether a run's worker is alive,
    so a run whose worker died is marked failed and its pool slots freed. It judges runs that
    `spine run` executes in its own process the same way."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_run_records(RunsFilter(run_ids=[run.run_id]), limit=1)
        found = worker(self._instance, records[0]) if records else None
        if found is None:
            # Not known yet; the start timeout of run monitoring covers runs that never start.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker process recorded yet")
        if found.alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {found.pid} is running")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"process {found.pid} died during {_during(self._instance, run.run_id)} (killed or crashed)",
        )


class CancelOnInterrupt(logging.Handler):
    """A Dagster log handler that asks the run to cancel when one of its steps is interrupted.

    Dagster ends an interrupted run as CANCELED only if the run was already CANCELING when the
    interrupt reached the job; otherwise it calls the interrupt unexpected and fails the run.
    Handlers see each event as it is logged, in the executing thread, before the interrupt
    travels on: the one point where the request can be recorded ahead of that decision."""

    def emit(self, record: logging.LogRecord) -> None:
        if not has_log_record_metadata(record):
            return
        meta = get_log_record_metadata(record)
        event = meta.get("dagster_event")
        if event is None or not event.is_step_failure or not meta.get("run_id"):
            return
        if event.step_failure_data.error_source != ErrorSource.INTERRUPT:
            return
        instance = persistent_instance()
        run = instance.get_run_by_id(meta["run_id"])
        if run is not None and run.status == DagsterRunStatus.STARTED:
            instance.report_run_canceling(run, f"Step {event.step_key} was interrupted; canceling the run.")


def stop_runs_of_this_process(every_seconds: float = 3.0, for_seconds: float = 60.0) -> None:
    """After an interrupt, see the runs this process executes (tagged `PID_TAG`) to their end:
    ask each to cancel, then interrupt the process again every few seconds while one still runs.

    Dagster stops a run in process when its main thread is interrupted, but code inside a step
    may swallow the interrupt (dbt's command line, run in process while a dbt step sets up,
    turns it into an abort of its own) and the run would go on. Dagster's run workers meet a
    cancel request the same way: the request first, then an interrupt."""

    instance = persistent_instance()
    mine = RunsFilter(tags={PID_TAG: str(os.getpid())}, statuses=UNFINISHED)
    deadline = time.monotonic() + for_seconds
    while time.monotonic() < deadline:
        runs = instance.get_runs(mine)
        if not runs:
            return
        for run in runs:
            if run.status == DagsterRunStatus.STARTED:
                instance.report_run_canceling(run, "Interrupted (Ctrl-C or SIGTERM); canceling the run.")
        time.sleep(every_seconds)
        if instance.get_runs(mine):
            os.kill(os.getpid(), signal.SIGINT)


# Instance settings `spine run` adds to the instance's own (`instance_for_terminal`).
TERMINAL_OVERRIDES = {
    # Dagster mirrors the output of a step it captures through `tail` helper processes, which
    # share the terminal's process group: a Ctrl-C prints their tracebacks. In a terminal the
    # output is seen as it happens anyway.
    "compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"},
    "python_logs": {
        "dagster_handler_config": {
            "handlers": {"cancel_on_interrupt": {"class": f"{__name__}.CancelOnInterrupt", "level": "ERROR"}}
        }
    },
}


def persistent_instance() -> dg.DagsterInstance:
    """The instance in `DAGSTER_HOME` (default `.dagster_home`), where run history persists."""
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(settings().dagster_home)))


def instance_for_terminal() -> dg.DagsterInstance:
    """The persistent instance (`DAGSTER_HOME`) as a command run in a terminal uses it: step
    output goes straight to the terminal and an interrupted run ends canceled."""
    # The log handler comes from the instance's logging settings, which Dagster still calls beta.
    warnings.filterwarnings("ignore", message="Handling yaml-defined logging", category=dg.BetaWarning)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(settings().dagster_home), overrides=TERMINAL_OVERRIDES))
