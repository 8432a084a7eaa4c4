"""The local vendor APIs in a process of their own, for the API benchmark.

A server thread inside the pipeline's process would share its GIL and count its work as the
pipeline's; in its own process it behaves like the remote service it stands in for.

    python -m benchmarks.vendor SOURCES_DIR    serves on a free port, prints `ready <url> <s>`
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.measure import cpu_seconds
from data_spine.settings import PROJECT_ROOT


class VendorApiProcess:
    """`python -m benchmarks.vendor` serving the company in `sources_dir`; a context manager."""

    def __init__(self, sources_dir: Path):
        self.sources_dir = sources_dir
        self.url = ""
        self.load_seconds = 0.0
        self.peak_rss_mb: float | None = None
        self._process: subprocess.Popen | None = None

    def base_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self._process.pid)

    def __enter__(self) -> VendorApiProcess:
        # `-m` from the project root: the same checkout as the pipeline, whichever is installed.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.vendor", str(self.sources_dir)],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._process.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.__exit__()
            raise RuntimeError(f"the vendor API server did not start (exit code {self._process.returncode})")
        self.url, self.load_seconds = line[1], float(line[2])
        return self

    def __exit__(self, *exc) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        # wait4 rather than Popen.wait, for the server's rusage.
        while not (reaped := os.wait4(self._process.pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                self._process.kill()
                deadline = float("inf")
            time.sleep(0.1)
        _, status, usage = reaped
        self._process.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss_mb = usage.ru_maxrss / 1024


def serve(sources_dir: Path) -> None:
    from sample_company.vendor_api import VendorApiServer

    server = VendorApiServer(sources_dir)
    started = time.perf_counter()
    # A real vendor has its data at hand; the stand-in reads its files on first use, which
    # would otherwise be timed as the connector's.
    server.warm()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"ready {server.url} {time.perf_counter() - started:.2f}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
