"""The local vendor APIs in a process of their own (`spine serve`), for the API benchmark.

A server thread inside the pipeline's process would share its GIL and count its work as the
pipeline's; in its own process it behaves like the remote service it stands in for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from benchmarks.measure import cpu_seconds
from data_spine.config import PROJECT_ROOT
from sample_company.vendor_api import DEMO_CREDENTIALS

# One small request per endpoint makes the server read and index its records before the clock
# starts: a real vendor has its data at hand, the stand-in loads it on first use.
WARM_UP = {
    "stripe": [f"v1/{o}?limit=1&status=all" for o in
               ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")],
    "hubspot": [f"crm/v3/objects/{o}?limit=1" for o in ("companies", "contacts", "deals")],
    "zendesk": ["api/v2/incremental/tickets/cursor.json?start_time=0&per_page=1",
                "api/v2/incremental/users/cursor.json?start_time=0&per_page=1",
                *(f"api/v2/{o}.json?page[size]=1" for o in ("organizations", "ticket_metrics", "satisfaction_ratings"))],
}
AUTH = {
    "stripe": ("Bearer", DEMO_CREDENTIALS["stripe_api_key"]),
    "hubspot": ("Bearer", DEMO_CREDENTIALS["hubspot_token"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VendorApiProcess:
    """`spine serve` on a free port, serving the company in `data_dir`; a context manager."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.peak_rss_mb: float | None = None
        self._process: subprocess.Popen | None = None

    def base_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    def __enter__(self) -> "VendorApiProcess":
        env = {**os.environ, "SPINE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"}
        # `-m` from the project root: the same checkout as the pipeline, whichever is installed.
        self._process = subprocess.Popen([sys.executable, "-m", "data_spine.cli", "serve", "--port", str(self.port)],
                                         cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the vendor API server exited with code {self._process.returncode}")
            try:
                requests.get(self.url, timeout=1)
                return self
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("the vendor API server did not answer within 60 s") from None
                time.sleep(0.2)

    def warm_up(self) -> float:
        """Make the server load every object; returns the seconds it took."""
        started = time.perf_counter()
        with requests.Session() as session:
            for vendor, paths in WARM_UP.items():
                if vendor == "zendesk":
                    auth = (f"{DEMO_CREDENTIALS['zendesk_email']}/token", DEMO_CREDENTIALS["zendesk_api_token"])
                    headers = {}
                else:
                    auth = None
                    headers = {"Authorization": " ".join(AUTH[vendor])}
                for path in paths:
                    session.get(f"{self.base_url(vendor)}/{path}", headers=headers, auth=auth, timeout=600).raise_for_status()
        return time.perf_counter() - started

    def __exit__(self, *exc) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        # `spine serve` stops cleanly on Ctrl+C; wait4 rather than Popen.wait, for its rusage.
        self._process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while not (reaped := os.wait4(self._process.pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                self._process.kill()
                deadline = float("inf")
            time.sleep(0.1)
        _, status, usage = reaped
        self._process.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss_mb = usage.ru_maxrss / 1024
