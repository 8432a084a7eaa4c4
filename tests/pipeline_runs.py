"""Whole-pipeline runs of the sample company in other shapes, as a user runs them (`spine run`).

Each run gets a data folder, a Dagster instance and a vendor API port of its own, so several
run side by side. `documented` names fixture files of records shaped as the vendors document
them (tests/fixtures/vendor_docs): they are added to what the local vendor APIs serve, beside
the generated company.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from data_spine.settings import PROJECT_ROOT
from sample_company.generate import generate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendor_docs"
AS_OF = date(2026, 11, 21)
# A run launched through the webserver's GraphQL API, as the UI's LaunchPipelineExecution
# mutation and the schedule launch them; a refusal comes back with what the UI would show.
LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""


@dataclass(frozen=True)
class Shape:
    name: str
    variant: str
    documented: tuple[str, ...] = ()


@dataclass
class Run:
    shape: Shape
    root: Path
    returncode: int = -1
    output: str = ""
    documented: dict[str, dict] = field(default_factory=dict)
    digest: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.root / "spine_run.log"

    @property
    def warehouse(self) -> Path:
        return self.root / "data" / "warehouse.duckdb"

    def rows(self, sql: str, *params) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()

    def value(self, sql: str, *params):
        return self.rows(sql, *params)[0][0]

    @property
    def dbt_summary(self) -> str:
        lines = [line for line in self.output.splitlines() if "Done. PASS=" in line]
        return lines[-1] if lines else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def documented_records(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _add_documented(sources: Path, name: str) -> dict:
    """Append a fixture file's records to the files the local vendor APIs serve."""
    doc = documented_records(name)
    vendor = name.split("_")[0]
    for resource, records in doc["records"].items():
        path = sources / vendor / f"{resource}.jsonl"
        with path.open("a") as f:
            for record in records.values():
                f.write(json.dumps(record) + "\n")
    return doc


def prepare(root: Path, variant: str = "default", defects: str = "none") -> None:
    """A data folder with the `tiny` company and a Dagster instance of its own under `root`."""
    data = root / "data"
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    generate(
        data / "sources",
        data / "landing" / "usage_events",
        preset="tiny",
        seed=42,
        as_of=AS_OF,
        defects=defects,
        variant=variant,
        log=lambda *_: None,
    )


def copy_of(run: Run, root: Path) -> Path:
    """A folder of its own holding what a finished run left (data, vendors' files, Dagster
    instance), for a test that changes it: cheaper than running the pipeline again."""
    for part in ("data", "dagster_home"):
        shutil.copytree(run.root / part, root / part, symlinks=True)
    return root


def spine_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a `spine` command working in `root` (see `prepare`)."""
    data = root / "data"
    env = {
        **os.environ,
        "SPINE_DATA_DIR": str(data),
        "SPINE_WAREHOUSE": str(data / "warehouse.duckdb"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "SPINE_VENDOR_API_PORT": str(free_port()),
        "SPINE_AS_OF": AS_OF.isoformat(),
        **extra,
    }
    env.pop("SPINE_LANDING_DIR", None)
    return env


def spine_run(
    root: Path,
    log: Path,
    *args: str,
    variant: str = "default",
    defects: str = "none",
    env: dict[str, str] | None = None,
    code: Path = PROJECT_ROOT,
    new_session: bool = False,
    installed: bool = False,
) -> subprocess.Popen:
    """Start `spine run` at `tiny` in `root`, its output (stdout and stderr) going to `log`;
    `code` is the project's checkout to run (a changed copy of it, say); `new_session` starts
    it in a session of its own, so a signal to its group reaches all its processes, dbt
    included, as a terminal's would; `installed` starts the `spine` command the package
    installs, as a user types it, instead of its module.

    Output goes to a file, not a pipe: a run whose pipe nobody reads yet (its sibling is
    still being waited for) would block on a full pipe buffer."""
    spine = [str(Path(sys.executable).parent / "spine")] if installed else [sys.executable, "-m", "command_line.main"]
    with log.open("w") as out:
        return subprocess.Popen(
            [
                *spine,
                "run",
                "--preset",
                "tiny",
                "--as-of",
                AS_OF.isoformat(),
                "--defects",
                defects,
                "--variant",
                variant,
                "--no-docs",
                *args,
            ],
            cwd=code,
            env={**(env or spine_env(root)), "PYTHONPATH": str(code)},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,
        )


def spine_dev(root: Path, port: int, log: Path) -> subprocess.Popen:
    """Start `spine dev` (vendor APIs and the Dagster UI on `port`) for `root`, in a session of
    its own (`stop_group` stops it and everything it started), its output going to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "command_line.main", "dev", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=spine_env(root),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start(shape: Shape, root: Path) -> tuple[Run, subprocess.Popen]:
    """Generate the company in its shape, add the documented records, start `spine run`."""
    prepare(root, shape.variant)
    run = Run(shape, root)
    for name in shape.documented:
        run.documented[name] = _add_documented(root / "data" / "sources", name)
    return run, spine_run(root, run.log, variant=shape.variant)


# Columns whose values differ between two loads of the same data: dlt's load bookkeeping
# (`load_id`, `last_load_id`: the load an event came in, under the models' names) and when a
# dbt run wrote a row of an incremental model (`refreshed_at`).
_RUN_COLUMNS = ("_dlt_load_id", "_dlt_id", "_dlt_parent_id", "_dlt_root_id", "load_id", "last_load_id", "refreshed_at")


def warehouse_digest(
    warehouse: Path, schemas: tuple[str, ...] = ("raw_", "staging", "intermediate", "marts", "serving")
) -> dict[str, tuple[int, int]]:
    """`schema.table` -> (rows, order-independent hash of the rows without dlt's load columns),
    for every table of the schemas named (or prefixed, `raw_`), dlt's own tables left out.
    Two warehouses built from the same data have equal digests."""
    digest: dict[str, tuple[int, int]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where table_name not like '\\_dlt%' escape '\\' "
            "and schema_name not like '%\\_staging' escape '\\' order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            if not any(schema == s or (s.endswith("_") and schema.startswith(s)) for s in schemas):
                continue
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from duckdb_columns() where schema_name = ? and table_name = ? "
                    "order by column_index",
                    [schema, table],
                ).fetchall()
                if c not in _RUN_COLUMNS
            ]
            row = ", ".join(f'"{c}"' for c in columns)
            digest[f"{schema}.{table}"] = tuple(
                con.execute(
                    f'select count(*), coalesce(sum(hash(row({row}))::hugeint), 0) from "{schema}"."{table}"'
                ).fetchone()
            )
    return digest


def run_all(shapes: list[Shape], root: Path, at_once: int = 2) -> dict[str, Run]:
    """Every shape's run, `at_once` at a time."""
    done: dict[str, Run] = {}
    pending = list(shapes)
    while pending:
        batch, pending = pending[:at_once], pending[at_once:]
        started = [start(shape, root / shape.name) for shape in batch]
        for run, process in started:
            run.returncode = process.wait(timeout=900)
            run.output = run.log.read_text()
            done[run.shape.name] = run
    return done


# The matrix the suite runs at `tiny`, beside the default company the other tests run (named
# product ids, custom fields present, our own event shape, trials and coupons): between them
# every variant value is used, and every resource's documented sparse and full records go
# through both Stripe API shapes. 2025-03-31.basil, which differs from the current shape only
# in its discounts' embedded coupons, goes through staging and MRR in test_stripe_versions.py;
# RudderStack, which sends Segment's spec, through tests/unit/test_event_formats.py.
SHAPES = [
    Shape(
        "legacy",
        "stripe_api=2024-06-20,product_ids=generated,events=segment",
        ("stripe_2024-06-20", "hubspot", "zendesk"),
    ),
    Shape(
        "current",
        "stripe_api=2025-09-30.clover,product_ids=generated,custom_fields=absent,events=snowplow,trials=no,coupons=no",
        ("stripe_2025-09-30.clover", "hubspot", "zendesk"),
    ),
]


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """Stop a command started in a session of its own (`start_new_session=True`) and every
    process it started: SIGTERM to the group, SIGKILL after `grace` seconds."""
    import signal
    import time

    deadline = time.monotonic() + grace
    os.killpg(process.pid, signal.SIGTERM)
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def instance_of(root: Path):
    """The Dagster instance of a run folder."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(root / "dagster_home"))


def claimed_slots(instance) -> list:
    """The `duckdb_warehouse` pool's claimed slots and the steps waiting for one."""
    from orchestration.resources import WAREHOUSE_POOL

    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    return [*info.claimed_slots, *info.pending_steps]
