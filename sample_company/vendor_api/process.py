"""The local vendor APIs in a process of their own.

A server thread inside the pipeline's process would share its interpreter lock and its memory,
and count both as the pipeline's; in a process of its own it behaves like the remote service
it stands in for, and its memory is its own (and is returned when it stops).

    python -m sample_company.vendor_api.process SOURCES_DIR [--port N] [--stripe-api-version V] [--warm]

serves until SIGTERM and prints `ready <url> <seconds to start>` once it answers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sample_company.vendor_api.server import VendorApiServer

# Where `python -m sample_company...` finds this checkout, whichever copy is installed.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 120.0


class VendorApiProcess:
    """Serve the company in `sources_dir` from a child process; a context manager.

    `peak_rss_mb` and `cpu_seconds()` tell what the server used (after exit, and so far)."""

    def __init__(self, sources_dir: Path, port: int = 0, stripe_api_version: str | None = None, warm: bool = False):
        self.sources_dir = sources_dir
        self.port, self.stripe_api_version, self.warm = port, stripe_api_version, warm
        self.url = ""
        self.load_seconds = 0.0
        self.peak_rss_mb: float | None = None
        self._process: subprocess.Popen | None = None

    def base_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server has used so far, where /proc tells it."""
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def __enter__(self) -> VendorApiProcess:
        cmd = [sys.executable, "-m", "sample_company.vendor_api.process", str(self.sources_dir)]
        cmd += ["--port", str(self.port)]
        if self.stripe_api_version:
            cmd += ["--stripe-api-version", self.stripe_api_version]
        if self.warm:
            cmd.append("--warm")
        self._process = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, text=True
        )
        line = self._process.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.__exit__()
            raise RuntimeError(
                f"the local vendor APIs did not start (exit code {self._process.returncode}); see the output above"
            )
        self.url, self.load_seconds = line[1], float(line[2])
        return self

    def __exit__(self, *exc) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        # wait4 rather than Popen.wait, for the server's rusage.
        try:
            while not (reaped := os.wait4(self._process.pid, os.WNOHANG))[0]:
                if time.monotonic() > deadline:
                    self._process.kill()
                    deadline = float("inf")
                time.sleep(0.05)
        except ChildProcessError:
            # Already reaped by someone waiting for any child (a run being cancelled can be):
            # it has ended, and its figures went with it.
            self._process.returncode = -signal.SIGTERM
            return
        _, status, usage = reaped
        self._process.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss_mb = usage.ru_maxrss / 1024


def _exit_with_parent(parent: int) -> None:
    """A pipeline killed outright (SIGKILL) cannot stop its server: the server stops itself when
    its parent is gone, rather than holding the port the next run needs."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sample_company.vendor_api.process")
    parser.add_argument("sources_dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stripe-api-version")
    parser.add_argument("--warm", action="store_true", help="read and index every record before answering")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    options = {"stripe_api_version": args.stripe_api_version} if args.stripe_api_version else {}
    server = VendorApiServer(args.sources_dir, port=args.port, **options)
    if args.warm:
        # A real vendor has its data at hand; the stand-in reads its files on first use,
        # which a benchmark would otherwise time as the connector's.
        server.warm()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    print(f"ready {server.url} {time.perf_counter() - started:.2f}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent says what happened
        pass


if __name__ == "__main__":
    main()
