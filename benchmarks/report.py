"""Targets, the printed tables and the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.measure import Measurement

API_SOURCES = ("stripe", "hubspot", "zendesk")
INGESTION = ("usage", *API_SOURCES)
MEMORY_LIMIT_MB = 2048
API_RATE = 50_000
USAGE_VS_DUCKDB = 0.8
GENERATE_SECONDS = 600
VALIDATE_USAGE_MEMORY_MB = 1536


@dataclass
class Verdict:
    target: str
    measured: str
    met: bool


def verdicts(name: str, m: Measurement, every: dict[str, Measurement]) -> list[Verdict]:
    """The spec's targets that apply to measurement `name` (all are set for the `large` preset)."""
    out = []
    unfinished = "did not finish"
    if name == "usage" and "duckdb" in every:
        target = f"≥ {USAGE_VS_DUCKDB}× DuckDB native"
        if m.error or every["duckdb"].error:
            out.append(Verdict(target, unfinished, False))
        else:
            ratio = m.rate / every["duckdb"].rate
            out.append(Verdict(target, f"{ratio:.2f}×", ratio >= USAGE_VS_DUCKDB))
    if name in (*API_SOURCES, "api"):
        measured = unfinished if m.error else f"{m.rate:,.0f} rec/s"
        out.append(Verdict(f"≥ {API_RATE:,} rec/s", measured, not m.error and m.rate >= API_RATE))
    if name in (*INGESTION, "api"):
        # A step that was killed needed at least what it had reached.
        measured = f"{'≥ ' if m.error else ''}{m.peak_rss_mb:,.0f} MB"
        out.append(Verdict(f"peak RSS ≤ {MEMORY_LIMIT_MB:,} MB", measured, m.peak_rss_mb <= MEMORY_LIMIT_MB))
    if name == "validate usage_event":
        measured = f"{'≥ ' if m.error else ''}{m.peak_rss_mb:,.0f} MB"
        out.append(
            Verdict(
                f"peak RSS ≤ {VALIDATE_USAGE_MEMORY_MB:,} MB",
                measured,
                not m.error and m.peak_rss_mb <= VALIDATE_USAGE_MEMORY_MB,
            )
        )
    if name == "generate":
        measured = unfinished if m.error else f"{m.seconds / 60:.1f} min"
        out.append(Verdict(f"< {GENERATE_SECONDS // 60} min", measured, not m.error and m.seconds < GENERATE_SECONDS))
    return out


def quality_total(every: dict[str, Measurement]) -> Measurement | None:
    """Every suite validated, one after another, as one figure."""
    parts = [m for name, m in every.items() if name.startswith("validate ")]
    return _combined("validate (all)", parts) if parts else None


def api_total(every: dict[str, Measurement]) -> Measurement | None:
    """The three API sources loaded one after another, as one figure."""
    parts = [every[s] for s in API_SOURCES if s in every]
    if len(parts) < len(API_SOURCES):
        return None
    return _combined(
        "api", parts, {"server_cpu_seconds": _sum_or_none(p.detail.get("server_cpu_seconds") for p in parts)}
    )


def _combined(step: str, parts: list[Measurement], detail: dict | None = None) -> Measurement:
    """Steps run one after another, as one: times and records add up, memory is the largest."""
    return Measurement(
        step=step,
        records=sum(p.records for p in parts),
        seconds=sum(p.seconds for p in parts),
        peak_rss_mb=max(p.peak_rss_mb for p in parts),
        process_seconds=sum(p.process_seconds for p in parts),
        cpu_seconds=sum(p.cpu_seconds for p in parts),
        load_before=parts[0].load_before,
        load_after=parts[-1].load_after,
        detail=detail or {},
        error=", ".join(f"{p.step} did not finish" for p in parts if p.error) or None,
    )


def _sum_or_none(values) -> float | None:
    values = list(values)
    return None if None in values else sum(values)


def table(headers: list[str], rows: list[list[str]], text: int = 1) -> str:
    """Plain text table: figures right-aligned, text (the first and the last `text` columns) left."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    left = {0, *range(len(headers) - text + 1, len(headers))} if text > 1 else {0}

    def line(cells):
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def render(every: dict[str, Measurement]) -> str:
    rows = []
    for name, m in every.items():
        figures = [
            name,
            "—" if m.error else f"{m.records:,}",
            f"{m.seconds:,.1f}",
            "—" if m.error else f"{m.rate:,.0f}",
            f"{m.peak_rss_mb:,.0f}",
        ]
        checks = verdicts(name, m, every) or [None]
        for i, c in enumerate(checks):
            # One line per target; the figures are on the first.
            rows.append(
                [
                    *(figures if i == 0 else [""] * len(figures)),
                    "reference" if c is None else f"{c.target} ({c.measured})",
                    "" if c is None else ("met" if c.met else "NOT met"),
                ]
            )
    out = [table(["step", "records", "seconds", "records/s", "peak RSS MB", "target (measured)", "met"], rows, text=3)]
    out += [f"{name}: {m.error}" for name, m in every.items() if m.error]
    phased = [(n, m) for n, m in every.items() if m.phases]
    if phased:
        steps = ["extract", "normalize", "load"]
        rows = []
        for name, m in phased:
            server = m.detail.get("server_cpu_seconds")
            rows.append(
                [
                    name,
                    f"{m.seconds:,.1f}",
                    *(f"{m.phases.get(s, 0):,.1f}" for s in steps),
                    f"{m.cpu_seconds:,.1f}",
                    "" if server is None else f"{server:,.1f}",
                ]
            )
        out += [
            "",
            "Where the time goes (seconds): dlt steps; CPU time of the step's process (start-up included) "
            "and of the vendor API server during it",
            table(["step", "total", *steps, "step CPU", "vendor API CPU"], rows),
        ]
    return "\n".join(out)


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    mem = next((int(line.split()[1]) // 1024 for line in _lines("/proc/meminfo") if line.startswith("MemTotal:")), None)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_mb": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{pkg: version(pkg) for pkg in ("dlt", "duckdb", "pyarrow")},
    }


def code_version() -> dict:
    """The commit measured, and which measured folders differed from it in the working tree."""
    from data_spine.settings import PROJECT_ROOT

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
            ).stdout.rstrip("\n")
        except (OSError, subprocess.CalledProcessError):
            return ""

    changed = git("status", "--porcelain", "--", "connectors", "sample_company", "benchmarks", ".dlt")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": [line[3:] for line in changed.splitlines()]}


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def save(path: Path, preset: str, seed: int, every: dict[str, Measurement]) -> dict:
    """Merge this run's figures into `path`: a step not measured this time keeps its last figure."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    previous = json.loads(path.read_text()) if path.exists() else {}
    if (previous.get("preset"), previous.get("seed")) != (preset, seed):
        previous = {}
    measurements = previous.get("measurements", {})
    for name, m in every.items():
        measurements[name] = m.as_dict() | {
            "measured_at": now,
            "targets": [c.__dict__ for c in verdicts(name, m, every)],
        }
    results = {
        "preset": preset,
        "seed": seed,
        "updated_at": now,
        "machine": machine(),
        "code": code_version(),
        "measurements": measurements,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results
