"""Alert conditions of the runs themselves: a step that failed, a run whose process died.

Read from the Dagster instance like every other condition. Each step keeps the state of the
newest finished run that executed it (any job: the schedule's, a sensor's, a selection made in
the UI), so a step that failed fires once, naming the step, the first line of its cause, its
owner and the action, and a later run in which it succeeds sends the resolved message. A run
that ended without any step failing (its process died and it was marked failed afterwards) is
its job's own condition. Cancelled runs say nothing: someone stopped them on purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from expectations.suite import DATA_ENG
from expectations.suites import SUITES
from orchestration.errors import first_line_of
from quality.alert_conditions import Condition, utc_iso

RECENT_RUNS = 25
_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


def run_conditions(instance: dg.DagsterInstance) -> list[Condition]:
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=_FINISHED), limit=RECENT_RUNS)
    steps: dict[str, Condition] = {}
    jobs: dict[str, Condition] = {}
    for run in runs:  # newest first: the first word on a step or a job is the one that counts
        failures = {
            e.dagster_event.step_key: e for e in _events(instance, run.run_id, dg.DagsterEventType.STEP_FAILURE)
        }
        for step_key, entry in failures.items():
            if step_key not in steps:
                # A publication held back by its failed blocking checks is theirs to announce.
                steps[step_key] = (
                    _step_ok(step_key)
                    if _alerted_elsewhere(entry.dagster_event)
                    else _step_failed(step_key, entry, run)
                )
        for entry in _events(instance, run.run_id, dg.DagsterEventType.STEP_SUCCESS):
            steps.setdefault(entry.dagster_event.step_key, _step_ok(entry.dagster_event.step_key))
        if run.job_name not in jobs:
            died = run.status == dg.DagsterRunStatus.FAILURE and not failures
            jobs[run.job_name] = _run_died(run, instance) if died else _run_ok(run.job_name)
    return [*steps.values(), *jobs.values()]


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list[dg.EventLogEntry]:
    return [
        r.event_log_entry
        for r in instance.get_records_for_run(run_id, of_type=kind).records
        if r.event_log_entry.dagster_event
    ]


def _alerted_elsewhere(event: dg.DagsterEvent) -> bool:
    """A publication held back by failed blocking checks: those checks' own alerts say it."""
    user = event.step_failure_data.user_failure_data if event.step_failure_data else None
    held_for = (user.metadata or {}).get("blocking_failures") if user else None
    return bool(held_for and held_for.value)


def _cause(event: dg.DagsterEvent) -> str:
    """The first line of the innermost error: what went wrong, not Dagster's wrapping of it."""
    error = event.step_failure_data.error if event.step_failure_data else None
    return first_line_of(error) if error is not None else "no error was recorded"


def _owner(step_key: str) -> str:
    entity = step_key.removeprefix("publish_").removeprefix("audit_")
    return SUITES[entity].owner if entity in SUITES and entity != step_key else DATA_ENG


_ACTIONS = {
    "ingest": "Open the run in the Dagster UI: the step's log names the vendor API call or file that failed. "
    "Loaded data is untouched; the next run loads what this one missed.",
    "dbt_models": "Open the failed model's log in the Dagster UI and fix its SQL or its input. Entities built "
    "from it keep their last published version until a run builds it.",
    "audit": "Open the audit step's log in the Dagster UI. Serving keeps the entity's last published version.",
    "publish": "Open the publish step's log in the Dagster UI. Serving keeps the entity's last published version.",
}


def _action(step_key: str) -> str:
    for prefix, action in _ACTIONS.items():
        if step_key.startswith(prefix):
            return action
    return "Open the run in the Dagster UI and read the step's log; rerun once the cause is fixed."


def _step_failed(step_key: str, entry: dg.EventLogEntry, run: dg.DagsterRun) -> Condition:
    return Condition(
        key=f"step_failure:{step_key}",
        kind="step_failure",
        state="fail",
        dataset=f"Dagster step {step_key}",
        what=f"step {step_key} failed: {_cause(entry.dagster_event)}",
        how_many=f"run {run.run_id} of {run.job_name}",
        since=utc_iso(datetime.fromtimestamp(entry.timestamp, UTC)),
        causes=("a change in the project's code or configuration", "a source or resource that was unavailable"),
        owner=_owner(step_key),
        action=_action(step_key),
        details={"step": step_key, "run_id": run.run_id, "job": run.job_name},
    )


def _step_ok(step_key: str) -> Condition:
    return Condition(
        key=f"step_failure:{step_key}",
        kind="step_failure",
        state="ok",
        dataset=f"Dagster step {step_key}",
        what=f"step {step_key} failed",
        owner=_owner(step_key),
    )


def _run_died(run: dg.DagsterRun, instance: dg.DagsterInstance) -> Condition:
    failure = _events(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE)
    message = (
        failure[0].dagster_event.message
        if failure and failure[0].dagster_event.message
        else "the run failed before any step did"
    )
    return Condition(
        key=f"run_died:{run.job_name}",
        kind="run_died",
        state="fail",
        dataset=f"Dagster job {run.job_name}",
        what=f"run {run.run_id} ended without finishing: {message.strip().splitlines()[0]}",
        causes=("the process running it was killed (out of memory, a restart, a lost machine)",),
        owner=DATA_ENG,
        action="Start the job again: the next run recovers the interrupted loads and builds. If it keeps "
        "dying, check the machine's memory and the run's last log lines.",
        details={"run_id": run.run_id, "job": run.job_name},
    )


def _run_ok(job_name: str) -> Condition:
    return Condition(
        key=f"run_died:{job_name}",
        kind="run_died",
        state="ok",
        dataset=f"Dagster job {job_name}",
        what="a run ended without finishing",
        owner=DATA_ENG,
    )
