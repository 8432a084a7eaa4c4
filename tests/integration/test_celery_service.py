"""Steps on Celery workers: two workers started with `spine service worker` (processes of their
own, as on two machines) execute a small job's steps for runs recorded in the service's Dagster
instance on a fresh PostgreSQL database.

- the two steps that can run at once do, one on each worker, and the step after them reads
  what both wrote;
- a worker killed mid-step (SIGKILL to it and its step process, as when its machine is lost)
  leaves the step to the other worker, which runs it again, and the run succeeds;
- a step whose process dies while its worker lives (the out-of-memory killer) fails the run,
  which names the step and why, rather than going round the workers;
- a step starts once the outputs it reads exist, even if the step that made them failed later,
  and a step of lower priority only once those above it have finished (the spine's rules,
  which dagster-celery alone does not follow);
- the whole service: `spine service instance`, `code-server`, `daemon` and `webserver`, a run
  launched through the UI's API waits in the run queue, the daemon launches it through the code
  server, and its steps run on the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
from celery_workers import Service, instance_env, service
from dagster._core.events import DagsterEventType
from pipeline_runs import LAUNCH, free_port

from data_spine.settings import PROJECT_ROOT

pytestmark = [
    pytest.mark.integration,
    # dagster-celery registers its step task again for every step it sends; the first stays.
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered"),
]
WORKERS = ("one", "two")
RUN_SECONDS = 50  # a run here takes seconds; past this the test kills it and fails


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Service:
    """The service's instance on a fresh database and two workers, `one` and `two`."""
    with service(tmp_path_factory.mktemp("celery_service")) as started, instance_env(started):
        for name in WORKERS:
            started.start_worker(name)
        for worker in started.workers.values():
            worker.wait_ready()
        yield started


@pytest.fixture
def two_workers(running: Service) -> Service:
    """Both workers alive at the start of the test (one killed by an earlier test is replaced)."""
    for name in WORKERS:
        if running.workers[name].process.poll() is not None:
            running.start_worker(name).wait_ready()
    return running


def _execute(running: Service, job: str, run_config: dict | None = None, **executor) -> tuple[dg.DagsterInstance, str]:
    """Run `job` from a process of its own (as `spine run` does), its steps sent to the workers."""
    config = {**running.executor_run_config(**executor), **(run_config or {})}
    return running.instance(), running.execute(job, config, RUN_SECONDS)


def _workers_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """The Celery workers that took each step, in order: dagster-celery records an engine event
    naming the worker as the worker begins a step."""
    taken: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        metadata = entry.dagster_event.engine_event_data.metadata or {}
        if entry.step_key and "Celery worker" in metadata:
            taken.setdefault(entry.step_key, []).append(metadata["Celery worker"].value)
    return taken


def _events(instance: dg.DagsterInstance, run_id: str, kind: DagsterEventType) -> list[dg.EventLogEntry]:
    return instance.all_logs(run_id, of_type=kind)


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    failures = _events(instance, run_id, DagsterEventType.RUN_FAILURE)
    assert failures, "the run has no failure event"
    data = failures[-1].dagster_event.event_specific_data
    error = data.error.to_string() if data and data.error else ""
    return f"{failures[-1].message}\n{error}"


class Killer(threading.Thread):
    """Kills whatever runs `step` a second after a worker began it: the worker with its step
    process (`whole_worker`), or the step's process alone."""

    def __init__(self, running: Service, step: str, whole_worker: bool):
        super().__init__(daemon=True)
        self.running, self.step, self.whole_worker = running, step, whole_worker
        self.killed: str | None = None  # the worker's node name
        self.step_pid: int | None = None
        self.problem: str | None = None

    def run(self) -> None:
        try:
            self._kill()
        except Exception as exc:  # told by the test
            self.problem = repr(exc)

    def _kill(self) -> None:
        instance = self.running.instance()
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                run_id = record.dagster_run.run_id
                starts = [e for e in _events(instance, run_id, DagsterEventType.STEP_START) if e.step_key == self.step]
                taken = _workers_by_step(instance, run_id).get(self.step)
                if starts and taken:
                    time.sleep(1.0)  # well into the step
                    self.step_pid = starts[0].dagster_event.pid
                    worker = next(w for w in self.running.workers.values() if w.node == taken[0])
                    if self.whole_worker:
                        worker.kill()
                    else:
                        os.kill(self.step_pid, signal.SIGKILL)
                    self.killed = taken[0]
                    return
            time.sleep(0.2)


def test_steps_run_on_both_workers_at_once(two_workers: Service):
    nap = {"config": {"seconds": 3}}
    instance, run_id = _execute(two_workers, "parallel_job", {"ops": {"left": nap, "right": nap}})

    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    taken = _workers_by_step(instance, run_id)
    assert set(taken) == {"left", "right", "joined"}, taken
    assert {taken["left"][0], taken["right"][0]} == {w.node for w in two_workers.workers.values()}, taken
    # Each step's events carry the pid of the process that ran it: a step process of each worker.
    pids = {e.step_key: e.dagster_event.pid for e in _events(instance, run_id, DagsterEventType.STEP_START)}
    run_process = _events(instance, run_id, DagsterEventType.RUN_START)[0].dagster_event.pid
    assert pids["left"] != pids["right"] and run_process not in pids.values(), pids
    starts = {e.step_key: e.timestamp for e in _events(instance, run_id, DagsterEventType.STEP_START)}
    ends = {e.step_key: e.timestamp for e in _events(instance, run_id, DagsterEventType.STEP_SUCCESS)}
    assert starts["left"] < ends["right"] and starts["right"] < ends["left"], (starts, ends)  # the naps overlapped
    # `joined` read both outputs, written by the two workers, through the instance's storage.
    assert starts["joined"] >= max(ends["left"], ends["right"])


def test_a_step_lost_with_its_worker_runs_again_on_the_other(two_workers: Service):
    killer = Killer(two_workers, "lengthy", whole_worker=True)
    killer.start()
    instance, run_id = _execute(two_workers, "lengthy_job", {"ops": {"lengthy": {"config": {"seconds": 6}}}})
    killer.join(timeout=10)

    assert killer.problem is None, killer.problem
    assert killer.killed is not None, "the step was never seen running"
    other = next(w.node for w in two_workers.workers.values() if w.node != killer.killed)
    assert _workers_by_step(instance, run_id)["lengthy"] == [killer.killed, other]
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    starts = _events(instance, run_id, DagsterEventType.STEP_START)
    assert [e.step_key for e in starts] == ["lengthy", "lengthy"]  # from its start again
    assert starts[1].dagster_event.pid != killer.step_pid
    assert len(_events(instance, run_id, DagsterEventType.STEP_SUCCESS)) == 1


def test_a_step_whose_process_dies_fails_the_run_with_its_name(two_workers: Service):
    killer = Killer(two_workers, "lengthy", whole_worker=False)
    killer.start()
    instance, run_id = _execute(two_workers, "lengthy_job", {"ops": {"lengthy": {"config": {"seconds": 6}}}})
    killer.join(timeout=10)

    assert killer.problem is None, killer.problem
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    message = _failure_message(instance, run_id)
    assert "[lengthy]" in message and "WorkerLostError" in message, message
    assert "SIGKILL" in message, message
    assert _workers_by_step(instance, run_id)["lengthy"] == [killer.killed]  # not sent out again
    # The worker itself lives on and takes the next step.
    assert all(w.process.poll() is None for w in two_workers.workers.values())


def test_a_step_starts_once_its_inputs_exist_though_their_step_failed(two_workers: Service):
    instance, run_id = _execute(
        two_workers, "partial_failure_job", step_dependency_config={"require_upstream_step_success": False}
    )
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    succeeded = {e.step_key for e in _events(instance, run_id, DagsterEventType.STEP_SUCCESS)}
    assert succeeded == {"uses_built"}
    assert {e.step_key for e in _events(instance, run_id, DagsterEventType.STEP_FAILURE)} == {"half_built"}

    # dagster-celery's own rule, for comparison: nothing after a failed step.
    instance, run_id = _execute(two_workers, "partial_failure_job")
    assert {e.step_key for e in _events(instance, run_id, DagsterEventType.STEP_SUCCESS)} == set()


def test_a_step_of_lower_priority_waits_for_those_above_it(two_workers: Service):
    instance, run_id = _execute(two_workers, "priority_job", {"ops": {"first": {"config": {"seconds": 2}}}})
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    starts = {e.step_key: e.timestamp for e in _events(instance, run_id, DagsterEventType.STEP_START)}
    ends = {e.step_key: e.timestamp for e in _events(instance, run_id, DagsterEventType.STEP_SUCCESS)}
    assert starts["last"] >= ends["first"], (starts, ends)  # though a worker was free all along
    warned = [e.message for e in instance.all_logs(run_id) if "dagster-celery/priority" in (e.message or "")]
    assert not warned, warned


SERVICE_START_SECONDS = 90


def _launch(port: int, job: str, run_config: dict) -> str | None:
    """Launch `job` through the webserver's GraphQL API, as the UI does; None while the webserver
    or its code location is not up yet."""
    params = {
        "runConfigData": run_config,
        "mode": "default",
        "executionMetadata": {"tags": []},
        "selector": {"repositoryLocationName": "data_spine", "repositoryName": "__repository__", "pipelineName": job},
    }
    try:
        response = requests.post(
            f"http://127.0.0.1:{port}/graphql",
            timeout=30,
            json={"query": LAUNCH, "variables": {"executionParams": params}},
        )
    except requests.ConnectionError:
        return None
    if response.status_code != 200:
        return None
    launched = response.json()["data"]["launchPipelineExecution"]
    return launched["run"]["runId"] if launched["__typename"] == "LaunchRunSuccess" else None


def test_a_run_launched_through_the_service_waits_in_the_queue_and_runs_on_the_workers(two_workers: Service):
    ports = {"SPINE_CODE_SERVER_PORT": str(free_port()), "SPINE_WEBSERVER_PORT": str(free_port())}
    spine = str(Path(sys.executable).parent / "spine")
    command = [spine, "service", "instance"]
    setup = subprocess.run(command, cwd=PROJECT_ROOT, env=two_workers.env, capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "Dagster's tables are ready" in setup.stdout, setup.stdout

    processes = [
        two_workers.spine("code-server", "--module", "celery_workers", name="code-server", env=ports),
        two_workers.spine("daemon", name="daemon", env=ports),
        two_workers.spine("webserver", name="webserver", env=ports),
    ]
    try:
        nap = {"config": {"seconds": 2}}
        run_config = {**two_workers.executor_run_config(), "ops": {"left": nap, "right": nap}}
        deadline = time.monotonic() + SERVICE_START_SECONDS
        run_id = None
        while run_id is None and time.monotonic() < deadline:
            dead = [p.exited() for p in processes if p.exited()]
            assert not dead, dead[0]
            run_id = _launch(int(ports["SPINE_WEBSERVER_PORT"]), "parallel_job", run_config)
            time.sleep(0.5 if run_id is None else 0)
        assert run_id, "the webserver launched no run:\n" + "\n".join(p.output()[-2000:] for p in processes)

        instance = two_workers.instance()
        while time.monotonic() < deadline + RUN_SECONDS and not instance.get_run_by_id(run_id).is_finished:
            time.sleep(0.5)
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS, "\n".join(p.output()[-2000:] for p in processes)
    finally:
        for process in processes:
            process.kill()

    # Queued by the webserver, taken off the queue by the daemon, run by a process the code server
    # started, its steps on both workers.
    enqueued = _events(instance, run_id, DagsterEventType.RUN_ENQUEUED)
    starting = _events(instance, run_id, DagsterEventType.RUN_STARTING)  # the daemon's, as it dequeues
    assert enqueued and starting and enqueued[0].timestamp <= starting[0].timestamp
    run_worker = _events(instance, run_id, DagsterEventType.RUN_START)[0].dagster_event.pid
    assert run_worker not in {os.getpid(), *(p.process.pid for p in processes)}
    taken = _workers_by_step(instance, run_id)
    assert {taken["left"][0], taken["right"][0]} == {w.node for w in two_workers.workers.values()}, taken
