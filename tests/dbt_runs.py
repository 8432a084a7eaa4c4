"""dbt as the tests run it: the project's own CLI on a warehouse and target folder of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from data_spine.settings import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt_project"
DBT = str(Path(sys.executable).parent / "dbt")
AS_OF = "2026-11-21"


def run_dbt(args: list[str], warehouse: Path, target: Path, as_of: str = AS_OF) -> subprocess.CompletedProcess:
    """`dbt <args>` on `warehouse`, writing its artifacts to `target` (so that runs side by side
    share no partial-parse state), with the as-of date the sample companies of the tests use."""
    return subprocess.run(
        [
            DBT,
            *args,
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target-path",
            str(target),
            "--vars",
            json.dumps({"as_of_date": as_of}),
        ],
        env={**os.environ, "SPINE_WAREHOUSE": str(warehouse)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def passed(result: subprocess.CompletedProcess) -> bool:
    """The run finished and dbt's summary counts no error."""
    summary = [line for line in result.stdout.splitlines() if "Done. PASS=" in line]
    return result.returncode == 0 and bool(summary) and " ERROR=0 " in summary[-1]
