"""Pages as a real browser shows them: `tests/headless_browser.py` run in a process of its own
(Qt wants the main thread and exits with the page)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BROWSER = Path(__file__).with_name("headless_browser.py")


def rendered(html: Path, png: Path, probe: str | None = None) -> dict:
    """What the browser reports of `html` (see `headless_browser.render`), its screenshot
    saved as `png`; with a `probe` (JavaScript returning JSON text), what it returned."""
    run = subprocess.run(
        [sys.executable, str(BROWSER), str(html), str(png), *([probe] if probe else [])],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])
