"""The spine's service on this machine for tests: a fresh PostgreSQL database for the Dagster
instance, a DAGSTER_HOME holding the service's dagster.yaml, and Celery workers started with
`spine service worker` as processes of their own, on a queue no other test session uses.

Also the small jobs the tests give the workers (a worker imports this module, `--preload`).
"""

# No `from __future__ import annotations`: Dagster reads the ops' annotations (config, inputs).
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg2
from psycopg2 import sql

from data_spine.settings import PROJECT_ROOT, Settings
from orchestration.service.celery_steps import executor_config, spine_celery_executor

TESTS = Path(__file__).resolve().parent
SERVER = "postgres@127.0.0.1:5432"
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
WORKER_START_SECONDS = 60


# --- the jobs: the service's executor, configured by each run (`Service.executor_run_config`) --


class Nap(dg.Config):
    seconds: float = 3.0


@dg.op
def left(config: Nap) -> int:
    time.sleep(config.seconds)
    return os.getpid()


@dg.op
def right(config: Nap) -> int:
    time.sleep(config.seconds)
    return os.getpid()


@dg.op
def joined(a: int, b: int) -> list[int]:
    # Inputs written by steps on other workers, read back through the instance's storage.
    return [a, b]


@dg.job(executor_def=spine_celery_executor)
def parallel_job():
    joined(left(), right())


@dg.op
def lengthy(config: Nap) -> None:
    time.sleep(config.seconds)


@dg.job(executor_def=spine_celery_executor)
def lengthy_job():
    lengthy()


@dg.op(out={"built": dg.Out(int), "never": dg.Out(int)})
def half_built():
    # As the dbt step does when one model fails: what was built is yielded, then the step fails.
    yield dg.Output(1, "built")
    raise RuntimeError("the second half failed")


@dg.op
def uses_built(built: int) -> int:
    return built + 1


@dg.op
def uses_never(never: int) -> int:
    return never + 1


@dg.job(executor_def=spine_celery_executor)
def partial_failure_job():
    built, never = half_built()
    uses_built(built)
    uses_never(never)


@dg.op
def first(config: Nap) -> None:
    time.sleep(config.seconds)


@dg.op(tags={"dagster/priority": "-1"})
def last() -> None:
    # As the scorecard: not downstream of `first`, after it by priority.
    pass


@dg.job(executor_def=spine_celery_executor)
def priority_job():
    first()
    last()


RUN_ID = "run id: "


def run_job(job: str, run_config: str) -> None:
    """`Service.execute` in the run's process: the job run in the instance of DAGSTER_HOME."""
    from orchestration.service.instance_setup import open_instance

    with open_instance(Path(os.environ["DAGSTER_HOME"])) as instance:
        result = dg.execute_job(
            dg.reconstructable(globals()[job]), instance, run_config=json.loads(run_config), raise_on_error=False
        )
    print(f"{RUN_ID}{result.run_id}", flush=True)


# What the code server serves in the tests (`spine service code-server --module celery_workers`).
defs = dg.Definitions(jobs=[parallel_job, lengthy_job, partial_failure_job, priority_job])


# --- the service -----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(prefix: str = "spine_test_dagster") -> Iterator[str]:
    """A new, empty PostgreSQL database (SQLAlchemy URL, as the instance takes it), dropped at
    the end with whatever is still connected to it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"postgresql://{SERVER}/postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        yield f"postgresql+psycopg2://{SERVER}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        admin.close()


@dataclass
class Process:
    """A process of the service, started in a session of its own (with what it starts: one
    group to stop), its output in a file."""

    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def exited(self) -> str | None:
        if self.process.poll() is None:
            return None
        return f"{self.name} exited ({self.process.returncode}):\n{self.output()[-3000:]}"

    def kill(self) -> None:
        """SIGKILL to the process and everything it started, as when its machine is lost."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)


@dataclass
class Worker(Process):
    @property
    def node(self) -> str:
        """The worker's Celery name, as dagster-celery records it on a step's events."""
        return f"{self.name}@{os.uname().nodename}"

    def wait_ready(self, seconds: float = WORKER_START_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if f"{self.node} ready." in self.output():
                return
            if self.exited():
                raise AssertionError(self.exited())
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready within {seconds} s:\n{self.output()[-3000:]}")


@dataclass
class Service:
    """Where the service of a test session lives and what its processes share."""

    home: Path
    postgres_url: str
    queue: str
    workers: dict[str, Worker] = field(default_factory=dict)  # by name: the latest started
    others: list[Process] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment of every process of the service."""
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "SPINE_DAGSTER_POSTGRES_URL": self.postgres_url,
            "SPINE_EXECUTOR": "celery",
            "SPINE_CELERY_BROKER_URL": BROKER,
            "SPINE_CELERY_QUEUE": self.queue,
            "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p),
        }

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def instance(self) -> dg.DagsterInstance:
        from orchestration.service.instance_setup import open_instance

        return open_instance(self.home)

    def executor_run_config(self, step_dependency_config: dict | None = None) -> dict:
        """Run config that sends a job's steps to this service's workers (the jobs above take
        the executor unconfigured)."""
        return {"execution": {"config": executor_config(self.settings, step_dependency_config)}}

    def execute(self, job: str, run_config: dict, seconds: float) -> str:
        """Run the job `job` of this module, its steps sent to the workers, from a process of its
        own (a run's process, as `spine run` or the code server starts one); the run's id. A run
        still going after `seconds` is killed, and so is the test."""
        code = "import sys, celery_workers as w; w.run_job(sys.argv[1], sys.argv[2])"
        command = [sys.executable, "-c", code, job, json.dumps(run_config)]
        try:
            done = subprocess.run(
                command, cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=seconds
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{job} did not end within {seconds} s:\n{(exc.stderr or b'')[-3000:]!r}") from None
        lines = [line for line in done.stdout.splitlines() if line.startswith(RUN_ID)]
        assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-3000:]
        return lines[-1].removeprefix(RUN_ID)

    def spine(self, *args: str, name: str, env: dict[str, str] | None = None, kind: type[Process] = Process) -> Process:
        """`spine service ARGS...` in the service's environment (plus `env`), in the background."""
        log = self.home.parent / f"{name}-{uuid.uuid4().hex[:6]}.log"
        command = [str(Path(sys.executable).parent / "spine"), "service", *args]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        started = kind(name, process, log)
        if not isinstance(started, Worker):
            self.others.append(started)
        return started

    def start_worker(
        self, name: str, preload: str = "celery_workers", concurrency: int = 1, env: dict[str, str] | None = None
    ) -> Worker:
        """A worker, `workers[name]` (with `env` added to the service's environment); its Celery
        name carries the session's queue name, since two workers of one name on one broker and
        host shut each other out."""
        celery_name = f"{name}-{self.queue}"
        args = ("worker", "--name", celery_name, "--preload", preload, "--concurrency", str(concurrency))
        started = self.workers[name] = self.spine(*args, name=celery_name, env=env, kind=Worker)
        return started

    def stop(self) -> None:
        for process in [*self.others, *self.workers.values()]:
            process.kill()


@contextlib.contextmanager
def service(root: Path) -> Iterator[Service]:
    """The service's instance on a fresh database, in `root`; the workers started through it are
    killed at the end, whatever happened."""
    from orchestration.service.instance_setup import write_instance_yaml

    with fresh_database() as url:
        home = root / "dagster_home"
        write_instance_yaml(home)
        running = Service(home, url, queue=f"spine-test-{uuid.uuid4().hex[:10]}")
        try:
            yield running
        finally:
            running.stop()
            forget_queue(running.queue)


def forget_queue(name: str) -> None:
    """Delete a test session's queue, and the exchange Celery made for it, from the broker."""
    from kombu import Connection

    with Connection(BROKER, connect_timeout=10) as connection:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


@contextlib.contextmanager
def instance_env(running: Service) -> Iterator[None]:
    """The variable the service's dagster.yaml reads, set in this process while it opens the
    instance and runs jobs (Dagster reads it as it loads the instance)."""
    before = os.environ.get("SPINE_DAGSTER_POSTGRES_URL")
    os.environ["SPINE_DAGSTER_POSTGRES_URL"] = running.postgres_url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SPINE_DAGSTER_POSTGRES_URL", None)
        else:
            os.environ["SPINE_DAGSTER_POSTGRES_URL"] = before
