"""Run one step in its own process and measure it: wall time, CPU time and peak memory.

Each step is a child process (`python -m benchmarks.steps ...`) so its peak RSS is its own:
`os.wait4` returns the rusage of exactly that child, where `RUSAGE_CHILDREN` would report the
largest of every child waited for so far.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_spine.settings import PROJECT_ROOT

PROGRESS_EVERY = 15.0  # seconds between "still running" lines


@dataclass
class Measurement:
    step: str
    records: int
    seconds: float
    """Wall time of the work itself, timed inside the step (no interpreter start or imports)."""
    peak_rss_mb: float
    process_seconds: float
    """Wall time of the whole child process, start-up included."""
    cpu_seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    phases: dict[str, float] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    error: str | None = None
    """Why the step did not finish; its peak RSS is then what it had reached."""

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return asdict(self) | {"records_per_second": round(self.rate, 1)}


def rss_mb(pid: int) -> float | None:
    """Current resident memory of a process, where /proc tells it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_step(
    step: str, argv: list[str], env: dict[str, str], result_file: Path, log=print, memory_cap_mb: float | None = None
) -> Measurement:
    """Run `python -m benchmarks.steps <argv>` as `step`; it writes its figures to `result_file`.

    A step whose RSS passes `memory_cap_mb` is stopped, before it can push a shared machine into
    its out-of-memory killer."""
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.steps", *argv, "--result", str(result_file)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    next_note = started + PROGRESS_EVERY
    capped = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter()
        rss = rss_mb(child.pid)
        if memory_cap_mb and rss and rss > memory_cap_mb and capped is None:
            capped = rss
            child.kill()
        if now >= next_note:
            log(f"  [{step}] {now - started:,.0f}s" + (f", RSS {rss:,.0f} MB" if rss is not None else ""))
            next_note = now + PROGRESS_EVERY
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    # Reaped by wait4 above, so tell Popen rather than letting it wait again.
    child.returncode = code = os.waitstatus_to_exitcode(status)
    error = None
    if capped:
        error = f"stopped at {capped:,.0f} MB RSS, over the memory cap of {memory_cap_mb:,.0f} MB"
    elif code == -signal.SIGKILL:
        error = "killed by SIGKILL (the kernel's out-of-memory killer, unless someone else)"
    elif code < 0:
        error = f"killed by {signal.Signals(-code).name}"
    elif code or not result_file.exists():
        error = f"exited with code {code}; see its output above"
    result = {"records": 0, "seconds": elapsed} if error else json.loads(result_file.read_text())
    return Measurement(
        step=step,
        error=error,
        records=result.pop("records"),
        seconds=result.pop("seconds"),
        # ru_maxrss is in kilobytes on Linux.
        peak_rss_mb=usage.ru_maxrss / 1024,
        process_seconds=elapsed,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        load_before=load_before,
        load_after=os.getloadavg(),
        phases=result.pop("phases", {}),
        detail=result,
    )
