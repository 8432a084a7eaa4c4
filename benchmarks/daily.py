"""End to end: a full `spine run`, then the next day's run, as a person would run them.

The full run starts from an empty warehouse on a copy of the company; `spine add-day` then
changes a share of the API objects and delivers one more day of usage events, and the daily
run is the second `spine run` on the same warehouse. Each run is measured from outside: wall
time, the Dagster steps' own durations grouped by phase (from the run's step statistics), and
the resident memory of every process of the run (the `spine` process, dbt, the validating
processes and the vendor APIs' process), sampled from /proc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.measure import rss_mb
from data_spine.settings import PROJECT_ROOT
from data_spine.warehouse import Warehouse

SAMPLE_EVERY = 0.25  # seconds between memory readings
# Dagster step keys by the phase of the pipeline they belong to (first match wins).
PHASES = (
    ("ingest", ("ingest_",)),
    ("source monitors", ("monitor_",)),
    ("docs", ("dbt_docs",)),
    ("dbt", ("dbt_",)),
    ("audit", ("audit__", "audit_")),
    ("publish", ("publish_",)),
    ("scorecard", ("scorecard",)),
    ("revenue report", ("revenue_report",)),
)


def phase_of(step_key: str) -> str:
    for phase, prefixes in PHASES:
        if any(step_key.startswith(p) for p in prefixes):
            return phase
    return "other"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _name(pid: int) -> str:
    """What a process is, in a word or two: `spine run`, `dbt build`, `vendor APIs`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [Path(a.decode(errors="replace")).name for a in argv if a][:6]
    if any(w.startswith("sample_company.vendor_api") for w in words):
        return "vendor APIs"
    for tool in ("spine", "dbt", "dagster"):
        if tool in words:
            i = words.index(tool)
            return " ".join(words[i : i + 2])
    return " ".join(words[:3])


@dataclass
class ProcessTreeMemory:
    """Peak RSS of each process under `root` (by what it is) and of the tree, over time."""

    root: int
    peaks: dict[str, float] = field(default_factory=dict)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time, tree MB)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        tree = _children()
        pids, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(tree.get(pid, ()))
        total = 0.0
        for pid in pids:
            if (mb := rss_mb(pid)) is None:
                continue
            total += mb
            name = _name(pid)
            self.peaks[name] = max(self.peaks.get(name, 0.0), mb)
        self.timeline.append((time.time(), total))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self._sample()

    def __enter__(self) -> ProcessTreeMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.timeline if start <= t <= end]
        return max(inside, default=0.0)

    @property
    def peak(self) -> float:
        return max((mb for _, mb in self.timeline), default=0.0)


@dataclass
class RunFigures:
    name: str
    seconds: float
    load_before: tuple[float, ...]
    load_after: tuple[float, ...]
    phases: dict[str, dict[str, float]]  # phase -> {"seconds": summed step time, "peak_mb": tree peak}
    process_peaks_mb: dict[str, float]
    tree_peak_mb: float
    error: str | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


class DailyBench:
    """A company copied into `root`, its own warehouse and Dagster instance."""

    def __init__(self, company: Path, root: Path, log=print, target: Warehouse | None = None):
        self.company, self.root, self.log = company, root, log
        self.dagster_home = root / "dagster_home"
        # The warehouse the runs write: the DuckDB file in `root` unless a PostgreSQL one is given.
        self.target = target

    def env(self) -> dict[str, str]:
        data = self.root / "data"
        env = {
            **os.environ,
            "SPINE_DATA_DIR": str(data),
            "SPINE_WAREHOUSE": str(data / "warehouse.duckdb"),
            "SPINE_LANDING_DIR": str(data / "landing" / "usage_events"),
            "DAGSTER_HOME": str(self.dagster_home),
            "PYTHONUNBUFFERED": "1",
            "SPINE_WAREHOUSE_TARGET": "duckdb",
        }
        if self.target and self.target.is_postgres:
            env |= {"SPINE_WAREHOUSE_TARGET": "postgres", "SPINE_POSTGRES_URL": self.target.postgres_url}
        return env

    def fresh(self) -> None:
        """An empty warehouse and Dagster instance, the company's files copied in."""
        if self.target and self.target.is_postgres:
            self.target.drop_database()
        shutil.rmtree(self.root, ignore_errors=True)
        data = self.root / "data"
        shutil.copytree(self.company / "sources", data / "sources")
        shutil.copytree(self.company / "landing" / "usage_events", data / "landing" / "usage_events")
        self.dagster_home.mkdir(parents=True)
        # The project's instance settings: the warehouse pool that keeps steps from colliding.
        shutil.copy(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", self.dagster_home / "dagster.yaml")

    def spine(self, name: str, *args: str) -> RunFigures:
        """Run `spine <args>` and measure it."""
        self.log(f"» {name}: spine {' '.join(args)} (load average {_load()})")
        load_before = os.getloadavg()
        started = time.perf_counter()
        log_path = self.root / f"{name.replace(' ', '_')}.log"
        with log_path.open("w") as out:
            child = subprocess.Popen(
                [sys.executable, str(Path(sys.executable).with_name("spine")), *args],
                cwd=PROJECT_ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            with ProcessTreeMemory(child.pid) as memory:
                while child.poll() is None:
                    time.sleep(0.2)
        seconds = time.perf_counter() - started
        error = None if child.returncode == 0 else f"exited with code {child.returncode}; see {log_path}"
        phases = self._phases(memory) if args[:1] == ("run",) else {}
        figures = RunFigures(
            name,
            seconds,
            load_before,
            os.getloadavg(),
            phases,
            dict(sorted(memory.peaks.items(), key=lambda kv: -kv[1])),
            memory.peak,
            error,
        )
        self.log(
            f"» {name}: {'FAILED, ' + error if error else 'done'} in {seconds:,.1f}s, "
            f"peak {memory.peak:,.0f} MB for the process tree (load average {_load()})"
        )
        return figures

    def _phases(self, memory: ProcessTreeMemory) -> dict[str, dict[str, float]]:
        """Step time per phase of the newest run in the bench's instance, and the memory peak
        of the process tree while that phase's steps ran."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            runs = instance.get_runs(limit=1)
            if not runs:
                return {}
            stats = instance.get_run_step_stats(runs[0].run_id)
        phases: dict[str, dict[str, float]] = {}
        for s in stats:
            if s.start_time is None or s.end_time is None:
                continue
            p = phases.setdefault(phase_of(s.step_key), {"seconds": 0.0, "peak_mb": 0.0})
            p["seconds"] += s.end_time - s.start_time
            p["peak_mb"] = max(p["peak_mb"], memory.peak_between(s.start_time, s.end_time))
        return phases


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def render(runs: dict[str, RunFigures]) -> str:
    """The runs side by side: wall time, time and memory per phase, the biggest processes."""
    names = list(runs)
    phases = [p for p, _ in PHASES if any(p in r.phases for r in runs.values())]
    head = "| | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---:|" * len(names)]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(runs[n]) for n in names) + " |")

    row("wall s", lambda r: "FAILED" if r.error else f"{r.seconds:,.1f}")
    for p in phases:
        row(f"{p} s", lambda r, p=p: f"{r.phases[p]['seconds']:,.1f}" if p in r.phases else "")
    row("peak MB (process tree)", lambda r: f"{r.tree_peak_mb:,.0f}")
    for p in phases:
        row(f"peak MB during {p}", lambda r, p=p: f"{r.phases[p]['peak_mb']:,.0f}" if p in r.phases else "")
    biggest = sorted({k for r in runs.values() for k in list(r.process_peaks_mb)[:4]})
    for proc in biggest:
        row(f"peak MB `{proc}`", lambda r, proc=proc: f"{r.process_peaks_mb.get(proc, 0):,.0f}")
    row("load average before", lambda r: " ".join(f"{x:.1f}" for x in r.load_before))
    return "\n".join(lines)
