"""Faults in the landing folder: an unreadable usage file is set aside with its reason and
alerted once while the other files load; bad lines inside a readable file are quarantined, and
the quarantine table is never taken for schema drift.

One private data folder and Dagster instance go through four runs of `usage_ingestion_job`
(each in a process of its own, as the landing-folder sensor starts it, then the alerts as
`spine run` sends them):
1. the tiny company's files;
2. three unreadable files (not gzip, cut short, gzip of CSV) and a good file with two bad lines;
3. nothing new;
4. the truncated file delivered again whole, its set-aside copy deleted.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from pipeline_runs import prepare, spine_env

from data_spine.settings import PROJECT_ROOT

RUN = """
import json
import dagster as dg
from command_line.main import send_alerts
from orchestration.definitions import defs

job = defs.resolve_job_def("usage_ingestion_job")
result = job.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
send_alerts()
drift = [e.passed for e in result.get_asset_check_evaluations() if e.check_name == "schema_drift"]
print("RESULT " + json.dumps({"success": result.success, "drift_passed": drift}))
"""

NOT_GZIP = "events_2026-11-22.jsonl.gz"
TRUNCATED = "events_2026-11-23.jsonl.gz"
CSV = "events_2026-11-24.jsonl.gz"
WITH_BAD_LINES = "events_2026-11-25.jsonl.gz"
UNREADABLE = (NOT_GZIP, TRUNCATED, CSV)


@dataclass
class Ingest:
    success: bool
    drift_passed: list[bool]
    alerts: list[dict]  # the alerts this run sent
    events: int
    quarantine: list[tuple[str, str]]  # (location, reason)
    schema_changes: list[tuple]
    rejected: dict[str, str] = field(default_factory=dict)  # file set aside -> its sidecar's text
    sidecars: set[str] = field(default_factory=set)
    landing: set[str] = field(default_factory=set)


def _events(template: list[dict], n: int) -> list[dict]:
    """`n` events shaped as the company's, with message ids of their own."""
    return [{**template[i % len(template)], "message_id": uuid.uuid4().hex} for i in range(n)]


def _write_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt") as f:
        f.writelines(line + "\n" for line in lines)


class Landing:
    def __init__(self, root: Path):
        self.root = root
        self.env = spine_env(root)
        self.folder = root / "data" / "landing" / "usage_events"
        self.rejected = root / "data" / "landing" / "rejected"
        self.warehouse = root / "data" / "warehouse.duckdb"
        self.alert_log = root / "data" / "alerts" / "alerts.jsonl"
        self.runs: list[Ingest] = []

    def ingest(self) -> Ingest:
        sent_before = len(self._alerts())
        process = subprocess.run(
            [sys.executable, "-c", RUN], cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=600
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and lines, process.stdout[-3000:] + process.stderr[-3000:]
        result = json.loads(lines[-1].removeprefix("RESULT "))
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            events = con.execute("select count(*) from raw_usage_events.events").fetchone()[0]
            has_quarantine = con.execute(
                "select count(*) from duckdb_tables() where schema_name = 'raw_usage_events' "
                "and table_name = 'quarantine'"
            ).fetchone()[0]
            quarantine = (
                con.execute("select location, reason from raw_usage_events.quarantine order by 1").fetchall()
                if has_quarantine
                else []
            )
            changes = con.execute("select table_name, column_name, change from quality.schema_changes").fetchall()
        run = Ingest(
            success=result["success"],
            drift_passed=result["drift_passed"],
            alerts=self._alerts()[sent_before:],
            events=events,
            quarantine=quarantine,
            schema_changes=changes,
            rejected={
                p.name.removesuffix(".reason.txt"): p.read_text()
                for p in self.rejected.glob("*.reason.txt")
                if (self.rejected / p.name[:-11]).exists()
            }
            if self.rejected.is_dir()
            else {},
            sidecars={p.name for p in self.rejected.glob("*.reason.txt")},
            landing={p.name for p in self.folder.iterdir()},
        )
        self.runs.append(run)
        return run

    def _alerts(self) -> list[dict]:
        if not self.alert_log.exists():
            return []
        return [json.loads(line) for line in self.alert_log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Landing:
    root = tmp_path_factory.mktemp("landing_faults")
    prepare(root)
    landing = Landing(root)
    sample = sorted(landing.folder.glob("*.jsonl.gz"))[-1]
    with gzip.open(sample, "rt") as f:
        template = [json.loads(line) for line in f if line.strip()]
    landing.ingest()

    # Not compressed at all; cut short mid-stream; compressed, but CSV rather than JSON lines.
    (landing.folder / NOT_GZIP).write_text("\n".join(json.dumps(e) for e in _events(template, 3)) + "\n")
    whole = gzip.compress("".join(json.dumps(e) + "\n" for e in _events(template, 400)).encode())
    (landing.folder / TRUNCATED).write_bytes(whole[: len(whole) // 2])
    _write_gz(landing.folder / CSV, ["message_id,user_id,event", "m1,u1,Login"])
    _write_gz(
        landing.folder / WITH_BAD_LINES,
        [json.dumps(e) for e in _events(template, 5)]
        + ["this is not JSON", json.dumps({"type": "track", "event": "Login", "user_id": "u1"})],
    )
    landing.ingest()
    landing.ingest()

    # The collector delivers the cut file again, whole; the operator deletes the set-aside copy.
    (landing.folder / TRUNCATED).write_bytes(whole)
    (landing.rejected / TRUNCATED).unlink()
    landing.ingest()
    return landing


def _lines(folder: Path, names) -> int:
    total = 0
    for name in names:
        with gzip.open(folder / name, "rt") as f:
            total += sum(1 for line in f if line.strip())
    return total


def test_the_good_files_load_beside_unreadable_ones(landing):
    first, second, third, fourth = landing.runs
    assert all(run.success for run in landing.runs)
    company_files = sorted(
        p.name for p in landing.folder.glob("*.jsonl.gz") if p.name not in (*UNREADABLE, WITH_BAD_LINES)
    )
    assert first.events == _lines(landing.folder, company_files) > 0
    assert second.events == first.events + 5  # the good lines of the file with bad lines
    assert third.events == second.events
    assert fourth.events == third.events + 400  # the cut file, delivered again whole


def test_unreadable_files_are_set_aside_with_their_reason(landing):
    second = landing.runs[1]
    assert set(second.rejected) == set(UNREADABLE)
    assert not set(UNREADABLE) & second.landing
    assert "reason: cannot be read: Not a gzipped file" in second.rejected[NOT_GZIP]
    assert "reason: cannot be read: Compressed file ended before the end-of-stream marker" in second.rejected[TRUNCATED]
    assert "reason: not JSON lines: none of its first 2 line(s) is a JSON object" in second.rejected[CSV]
    assert f"from: {landing.folder}" in second.rejected[NOT_GZIP]


def test_each_unreadable_file_alerts_once_and_resolves_when_it_is_gone(landing):
    first, second, third, fourth = landing.runs
    assert not [a for a in first.alerts if a["kind"] == "rejected_file"]
    fired = [a for a in second.alerts if a["kind"] == "rejected_file"]
    assert sorted(a["details"]["file"] for a in fired) == sorted(UNREADABLE)
    assert {(a["status"], a["severity"], a["state"]) for a in fired} == {("firing", "high", "fail")}
    not_gzip = next(a for a in fired if a["details"]["file"] == NOT_GZIP)
    assert (
        "Not a gzipped file" in not_gzip["how_many"]
        and str(landing.rejected / NOT_GZIP) in not_gzip["suggested_action"]
    )
    assert third.alerts == []  # the same files still set aside: nothing new to say
    assert set(third.rejected) == set(UNREADABLE)
    assert [(a["status"], a["details"]["file"]) for a in fourth.alerts if a["kind"] == "rejected_file"] == [
        ("resolved", TRUNCATED)
    ]
    assert set(fourth.rejected) == {NOT_GZIP, CSV}
    assert fourth.sidecars == {f"{NOT_GZIP}.reason.txt", f"{CSV}.reason.txt"}  # the deleted file's is gone


def test_bad_lines_are_quarantined_and_the_quarantine_is_no_drift(landing):
    second = landing.runs[1]
    assert [(location, reason.split(":")[0]) for location, reason in second.quarantine] == [
        (f"{WITH_BAD_LINES}:6", "not valid JSON"),
        (f"{WITH_BAD_LINES}:7", "missing required field(s)"),
    ]
    # The quarantine table arrived with the latest load of this run: what drift detection judged.
    with duckdb.connect(str(landing.warehouse), read_only=True) as con:
        hashes = con.execute(
            "select schema_version_hash from raw_usage_events._dlt_loads where status = 0 order by load_id"
        ).fetchall()
    assert len(set(hashes)) >= 2
    for run in landing.runs:
        assert run.drift_passed == [True]
        assert not [a for a in run.alerts if a["kind"] == "schema_drift"]
        assert not [c for c in run.schema_changes if "quarantine" in c[0]]
