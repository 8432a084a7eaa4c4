"""Under `dagster dev`, a run whose worker process is killed is marked failed (by the code
server that started the worker, or the daemon's run monitoring, which asks the instance's
launcher whether the worker lives) and its slot freed, so the next run launched through the
UI's API succeeds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster._core.events import DagsterEventType
from dagster._core.launcher import WorkerStatus
from pipeline_runs import LAUNCH, claimed_slots, free_port, instance_of, prepare, spine_dev, stop_group

RUN_SECONDS = 600


# Under `dagster dev`, through the webserver's GraphQL API, as the UI and the schedule launch runs.
LOCATION, REPOSITORY = "data_spine", "__repository__"  # workspace.yaml; a `Definitions` object's repository
DEV_STARTUP_SECONDS = 240
MONITORING_SECONDS = 180  # the daemon polls (every 3 s here, 15 s in the project) and frees slots 5 s after a run ends


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _launch(port: int, job: str) -> str:
    params = {
        "runConfigData": {},
        "mode": "default",
        "executionMetadata": {"tags": []},
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job},
    }
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", timeout=60, json={"query": LAUNCH, "variables": {"executionParams": params}}
    )
    response.raise_for_status()
    launched = response.json()["data"]["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _wait(what: str, seconds: float, check, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} not within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.mark.timeout(1200)
def test_under_dagster_dev_a_killed_worker_is_failed_by_the_daemon_and_the_next_run_succeeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_monitoring")
    prepare(root)
    # The project's instance settings, with the daemon's run monitoring polling more often.
    settings_file = root / "dagster_home" / "dagster.yaml"
    settings_file.write_text(settings_file.read_text().replace("poll_interval_seconds: 15", "poll_interval_seconds: 3"))
    instance = instance_of(root)
    port = free_port()
    log = root / "spine_dev.log"
    dev = spine_dev(root, port, log)
    try:

        def launched(job: str):
            try:
                return _launch(port, job)
            except (requests.ConnectionError, requests.HTTPError, KeyError, TypeError):
                return None

        killed = _wait("the webserver answering", DEV_STARTUP_SECONDS, lambda: launched("spine_job"), log)

        def in_dbt():
            starts = instance.all_logs(killed, of_type={DagsterEventType.RUN_START, DagsterEventType.STEP_START})
            return next((e.dagster_event.pid for e in starts if e.step_key == "dbt_models"), None) and next(
                e.dagster_event.pid for e in starts if e.dagster_event.event_type == DagsterEventType.RUN_START
            )

        worker = _wait("the run's dbt step", RUN_SECONDS, in_dbt, log)
        assert any(slot.run_id == killed for slot in claimed_slots(instance))
        # What the daemon's run monitoring asks the instance's launcher about the worker.
        health = instance.run_launcher.check_run_worker_health
        assert health(instance.get_run_by_id(killed)).status == WorkerStatus.RUNNING
        for pid in [worker, *_descendants(worker)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        dead = _wait(
            "the worker gone",
            30,
            lambda: (h := health(instance.get_run_by_id(killed))).status == WorkerStatus.FAILED and h,
            log,
        )
        assert f"process {worker} died during dbt_models" in dead.msg

        _wait(
            "the daemon failing the run",
            MONITORING_SECONDS,
            lambda: instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE,
            log,
        )
        _wait(
            "the daemon freeing the run's slot",
            MONITORING_SECONDS,
            lambda: not any(slot.run_id == killed for slot in claimed_slots(instance)),
            log,
        )

        # The next run needs the warehouse slot for its one step.
        following = _launch(port, "usage_ingestion_job")
        status = _wait(
            "the next run ending",
            RUN_SECONDS,
            lambda: (run := instance.get_run_by_id(following)).is_finished and run.status,
            log,
        )
        assert status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
    finally:
        stop_group(dev)
