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

from data_spine.config import PROJECT_ROOT
from sample_company.generate import generate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendor_docs"
AS_OF = date(2026, 11, 21)


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


def _free_port() -> int:
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


def start(shape: Shape, root: Path) -> tuple[Run, subprocess.Popen]:
    """Generate the company in its shape, add the documented records, start `spine run`."""
    data = root / "data"
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    generate(data / "sources", data / "landing" / "usage_events", preset="tiny", seed=42, as_of=AS_OF, defects="none",
             variant=shape.variant, log=lambda *_: None)
    run = Run(shape, root)
    for name in shape.documented:
        run.documented[name] = _add_documented(data / "sources", name)
    env = {**os.environ, "SPINE_DATA_DIR": str(data), "SPINE_WAREHOUSE": str(data / "warehouse.duckdb"),
           "DAGSTER_HOME": str(home), "SPINE_VENDOR_API_PORT": str(_free_port()), "SPINE_AS_OF": AS_OF.isoformat()}
    env.pop("SPINE_LANDING_DIR", None)
    # Output to a file, not a pipe: a run whose pipe nobody reads yet (its sibling is still
    # being waited for) would block on a full pipe buffer.
    with run.log.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "data_spine.cli", "run", "--preset", "tiny", "--as-of", AS_OF.isoformat(),
             "--defects", "none", "--variant", shape.variant, "--no-docs"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
    return run, process


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
# RudderStack, which sends Segment's spec, through tests/test_event_formats.py.
SHAPES = [
    Shape("legacy", "stripe_api=2024-06-20,product_ids=generated,events=segment",
          ("stripe_2024-06-20", "hubspot", "zendesk")),
    Shape("current", "stripe_api=2025-09-30.clover,product_ids=generated,custom_fields=absent,events=snowplow,"
                     "trials=no,coupons=no", ("stripe_2025-09-30.clover", "hubspot", "zendesk")),
]
