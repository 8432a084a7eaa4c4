"""The whole spine as a service: the `small` company on a PostgreSQL warehouse, the Dagster
instance on PostgreSQL, and the run's steps on two Celery workers started as processes of their
own (`spine service worker`), one of them killed in the middle of a step.

One `spine run` (the service's environment: SPINE_WAREHOUSE_TARGET=postgres,
SPINE_EXECUTOR=celery) runs beside the session's DuckDB run of the same company (`first_run`),
and a second run, the usage-ingestion job a sensor starts when files land, is started while the
first is in its dbt step. Then the PostgreSQL marts and serving tables are compared with the
DuckDB ones, row for row.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from celery_workers import Service, Worker, instance_env, service
from dagster._core.events import DagsterEventType
from pipeline_runs import free_port
from postgres_databases import POOLS_ON_POSTGRES, postgres_warehouse

from data_spine.settings import PROJECT_ROOT, settings
from data_spine.warehouse import Warehouse

pytestmark = [
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered"),
]
AS_OF = "2026-11-21"  # the session's company (tests/conftest.py)
WORKERS = ("one", "two")
KILLED_STEP = "ingest_usage_events"  # appends: the step where a rerun could duplicate rows
RUN_SECONDS = 1200
# Columns whose values belong to one load or one dbt run, not to the data.
RUN_COLUMNS = {"load_id", "last_load_id", "refreshed_at", "_dlt_load_id", "_dlt_id"}


@dataclass
class ServiceRun:
    service: Service
    warehouse: Warehouse
    returncode: int
    output: str
    killed: str | None
    second_run_id: str | None
    problems: list[str]

    def instance(self) -> dg.DagsterInstance:
        return self.service.instance()

    def run_id(self) -> str:
        runs = self.instance().get_runs(dg.RunsFilter(job_name="spine_job"))
        assert len(runs) == 1, [r.run_id for r in runs]
        return runs[0].run_id


def _step_events(instance: dg.DagsterInstance, run_id: str, kind: DagsterEventType) -> list:
    return instance.all_logs(run_id, of_type=kind)


def _workers_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """The Celery workers that began each step, in order (dagster-celery's engine events)."""
    taken: dict[str, list[str]] = {}
    for entry in _step_events(instance, run_id, DagsterEventType.ENGINE_EVENT):
        metadata = entry.dagster_event.engine_event_data.metadata or {}
        if entry.step_key and "Celery worker" in metadata:
            taken.setdefault(entry.step_key, []).append(metadata["Celery worker"].value)
    return taken


class Watcher(threading.Thread):
    """While the spine run goes: kills the worker that runs `KILLED_STEP` a second into it, starts
    a worker of the same name again (the service keeps two), and, once the dbt step has begun,
    runs the usage-ingestion job as a second run of its own."""

    def __init__(self, running: Service, env: dict[str, str], log: Path):
        super().__init__(daemon=True)
        self.running, self.env, self.log = running, env, log
        self.killed: str | None = None
        self.second: subprocess.Popen | None = None
        self.problems: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # reported by the test
            self.problems.append(repr(exc))

    def _watch(self) -> None:
        instance = self.running.instance()
        deadline = time.monotonic() + RUN_SECONDS
        while not self.done.is_set() and time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(job_name="spine_job", statuses=[dg.DagsterRunStatus.STARTED]))
            if runs:
                run_id = runs[0].run_id
                taken = _workers_by_step(instance, run_id)
                if self.killed is None and KILLED_STEP in taken:
                    time.sleep(1.0)
                    node = taken[KILLED_STEP][0]
                    worker = next(w for w in self.running.workers.values() if w.node == node)
                    worker.kill()
                    self.killed = node
                    name = next(n for n, w in self.running.workers.items() if w is worker)
                    _start_worker(self.running, name, self.env)
                starts = {e.step_key for e in _step_events(instance, run_id, DagsterEventType.STEP_START)}
                if self.second is None and "dbt_models" in starts:
                    self.second = _second_run(self.running, self.env, self.log)
            if self.killed and self.second:
                return
            time.sleep(0.3)


def _start_worker(running: Service, name: str, env: dict[str, str]) -> Worker:
    # The definitions loaded as the worker starts, so each step's process starts with them.
    return running.start_worker(name, preload="orchestration.definitions", env=env)


SECOND_RUN = """
import dagster as dg
from orchestration.definitions import usage_ingestion_job_definition
from orchestration.service.instance_setup import open_instance
import os, pathlib
with open_instance(pathlib.Path(os.environ["DAGSTER_HOME"])) as instance:
    result = dg.execute_job(dg.reconstructable(usage_ingestion_job_definition), instance, raise_on_error=False)
print("run id:", result.run_id, "success:", result.success, flush=True)
"""


def _second_run(running: Service, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SECOND_RUN],
            cwd=PROJECT_ROOT,
            env={**running.env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def service_run(tmp_path_factory, request) -> ServiceRun:
    root = tmp_path_factory.mktemp("spine_on_postgres")
    data = root / "data"
    with postgres_warehouse("spine_test_wh") as target, service(root) as running, instance_env(running):
        env = {
            "SPINE_WAREHOUSE_TARGET": "postgres",
            "SPINE_POSTGRES_URL": target.postgres_url,
            "SPINE_DATA_DIR": str(data),
            "SPINE_WAREHOUSE": str(data / "warehouse.duckdb"),
            "SPINE_LANDING_DIR": str(data / "landing" / "usage_events"),
            "SPINE_AS_OF": AS_OF,
            "SPINE_VENDOR_API_PORT": str(free_port()),
        }
        for name in WORKERS:
            _start_worker(running, name, env)
        for worker in running.workers.values():
            worker.wait_ready()
        log = root / "spine_run.log"
        with log.open("w") as out:
            spine = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "spine"),
                    "run",
                    "--preset",
                    "small",
                    "--seed",
                    "42",
                    "--as-of",
                    AS_OF,
                    "--no-docs",
                ],
                cwd=PROJECT_ROOT,
                env={**running.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        watcher = Watcher(running, env, root / "second_run.log")
        watcher.start()
        # The DuckDB run of the same company, in this process, meanwhile.
        request.getfixturevalue("first_run")
        try:
            returncode = spine.wait(timeout=RUN_SECONDS)
        finally:
            watcher.done.set()
            watcher.join(timeout=60)
        second_id = None
        if watcher.second is not None:
            watcher.second.wait(timeout=300)
            second_log = (root / "second_run.log").read_text()
            second_id = next((line.split()[2] for line in second_log.splitlines() if line.startswith("run id:")), None)
            if watcher.second.returncode != 0 or second_id is None:
                watcher.problems.append(f"the second run's process failed:\n{second_log[-3000:]}")
        yield ServiceRun(running, target, returncode, log.read_text(), watcher.killed, second_id, watcher.problems)


def test_the_spine_succeeds_on_postgres_with_steps_on_both_workers_at_once(service_run):
    assert service_run.returncode == 0, service_run.output[-4000:]
    assert not service_run.problems, service_run.problems
    instance, run_id = service_run.instance(), service_run.run_id()
    taken = _workers_by_step(instance, run_id)
    nodes = {node for nodes in taken.values() for node in nodes}
    assert nodes == {w.node for w in service_run.service.workers.values()}, taken
    spans = _spans(instance, run_id)
    overlapping = [(a, b) for a in spans for b in spans if a < b and _overlap(spans[a], spans[b])]
    assert overlapping, spans
    # No step claimed the single writer's pool: on PostgreSQL only the work two runs must not
    # do at once has a pool (a source's load, the dbt build, the roles' rebuild).
    pools = instance.event_log_storage.get_concurrency_keys()
    assert "duckdb_warehouse" not in pools and pools <= POOLS_ON_POSTGRES, pools


def _spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    started, ended = {}, {}
    for entry in _step_events(instance, run_id, DagsterEventType.STEP_START):
        started.setdefault(entry.step_key, entry.timestamp)
    for kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
        for entry in _step_events(instance, run_id, kind):
            ended[entry.step_key] = entry.timestamp
    return {step: (started[step], ended[step]) for step in started if step in ended}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_a_step_lost_with_its_worker_ran_again_on_the_other_and_stored_each_event_once(service_run):
    assert service_run.killed, "no worker was killed during the run"
    instance, run_id = service_run.instance(), service_run.run_id()
    taken = _workers_by_step(instance, run_id)[KILLED_STEP]
    assert taken[0] == service_run.killed and len(taken) >= 2, taken
    assert taken[-1] != service_run.killed or len(taken) > 2, taken
    successes = [e for e in _step_events(instance, run_id, DagsterEventType.STEP_SUCCESS) if e.step_key == KILLED_STEP]
    assert len(successes) == 1
    with service_run.warehouse.connect() as con:
        stored, distinct = con.execute(
            "select count(*), count(distinct message_id) from raw_usage_events.events"
        ).fetchone()
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        expected = con.execute("select count(*) from raw_usage_events.events").fetchone()[0]
    assert stored == distinct == expected


def test_a_second_run_at_once_did_not_wait_and_succeeded(service_run):
    assert service_run.second_run_id, service_run.problems
    instance = service_run.instance()
    second = instance.get_run_by_id(service_run.second_run_id)
    assert second.status == dg.DagsterRunStatus.SUCCESS
    first = instance.get_run_record_by_id(service_run.run_id())
    other = instance.get_run_record_by_id(service_run.second_run_id)
    assert other.start_time < first.end_time and first.start_time < other.end_time
    # Its step began while the first run was building its models.
    dbt = _spans(instance, service_run.run_id())["dbt_models"]
    step = next(iter(_spans(instance, service_run.second_run_id).values()))
    assert _overlap(dbt, step), (dbt, step)


def _schemas_tables(con, schema: str) -> list[str]:
    return sorted(
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'",
            [schema],
        ).fetchall()
    )


def _normal(value):
    """A value as both warehouses agree on it: numbers as floats (PostgreSQL's numeric and
    DuckDB's DECIMAL/DOUBLE), instants without a zone (both hold naive UTC), text as text."""
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, list | tuple):
        return tuple(_normal(v) for v in value)
    return value


def _rows(con, schema: str, table: str, columns: list[str]) -> list[tuple]:
    listed = ", ".join(f'"{c}"' for c in columns)
    rows = [
        tuple(_normal(v) for v in row) for row in con.execute(f'select {listed} from "{schema}"."{table}"').fetchall()
    ]
    return sorted(rows, key=lambda row: tuple((v is None, f"{v:.6f}" if isinstance(v, float) else str(v)) for v in row))


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # Numeric tolerance only for numbers: PostgreSQL's double precision and numeric
        # against DuckDB's DOUBLE and DECIMAL, which round the last digits differently.
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@pytest.mark.parametrize("schema", ["marts", "serving"])
def test_every_table_equals_the_duckdb_build_row_for_row(service_run, schema):
    assert service_run.returncode == 0, service_run.output[-3000:]
    with (
        duckdb.connect(str(settings().warehouse), read_only=True) as reference,
        service_run.warehouse.connect(read_only=True) as con,
    ):
        tables = _schemas_tables(reference, schema)
        assert tables and _schemas_tables(con, schema) == tables
        for table in tables:
            columns = [
                c
                for (c,) in reference.execute(
                    "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                    "order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if c not in RUN_COLUMNS
            ]
            expected, got = _rows(reference, schema, table, columns), _rows(con, schema, table, columns)
            assert len(got) == len(expected), f"{schema}.{table}: {len(got)} rows, DuckDB {len(expected)}"
            for want, have in zip(expected, got):
                assert all(_same(a, b) for a, b in zip(want, have)), f"{schema}.{table}:\n{want}\n{have}"
