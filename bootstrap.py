#!/usr/bin/env python3
"""Set up the project's environment from its lock file, then run a task in it.

    python3 bootstrap.py demo [spine run options]   whole pipeline on the `small` company
    python3 bootstrap.py test [pytest options]      the test suite
    python3 bootstrap.py lint                       ruff (lint, format) and sqlfluff, as CI runs them

Needs only Python 3.11 and pip: it creates `.venv`, installs the pinned `uv` into it, and has
uv install exactly what `uv.lock` lists. Re-running is cheap when nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def pinned_uv() -> str:
    """The uv requirement from the dev dependency group, so there is one pin to maintain."""
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    return next(req for req in groups if req.startswith("uv=="))


def run(cmd: list[str | Path], **kwargs) -> None:
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, **kwargs)
    if result.returncode:
        sys.exit(result.returncode)


def setup() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Data Spine needs Python 3.11; this is {sys.version.split()[0]} ({sys.executable}).")
    if not (BIN / "python").exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    uv_req = pinned_uv()
    stamp = VENV / ".uv-version"
    if not (BIN / "uv").exists() or not stamp.exists() or stamp.read_text() != uv_req:
        print(f"Installing {uv_req} ...", flush=True)
        run([BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", uv_req])
        stamp.write_text(uv_req)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV), "UV_PYTHON_DOWNLOADS": "never"}
    print("Installing locked dependencies (uv sync --frozen) ...", flush=True)
    # Bytecode compiled once at install: with PYTHONDONTWRITEBYTECODE set (common in CI and
    # containers) every process would otherwise recompile what it imports, seconds each time.
    # The project itself is installed again each time: its editable install lists its
    # packages, so one added since the last setup would not import otherwise.
    run(
        [
            *(BIN / "uv", "sync", "--frozen", "--all-groups", "--compile-bytecode", "--reinstall-package"),
            *("data-spine", "--python", BIN / "python", "--quiet"),
        ],
        env=env,
    )


TASKS = {
    "demo": lambda args: [BIN / "spine", "run", *args],
    # Two pytest workers (pytest-xdist): most tests wait on a pipeline run in a process of its
    # own, so two at a time keep both cores busy (three were slower on two cores: 880 s against
    # 788 s); SPINE_TEST_WORKERS=0 runs them in one process.
    "test": lambda args: [
        BIN / "python",
        "-m",
        "pytest",
        "-n",
        os.environ.get("SPINE_TEST_WORKERS", "2"),
        "--dist",
        "loadfile",
        *args,
    ],
    "lint": None,
    "setup": None,
}

LINTERS = [
    [BIN / "ruff", "check", "."],
    [BIN / "ruff", "format", "--check", "."],
    [BIN / "sqlfluff", "lint", "dbt_project"],
]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    task, args = sys.argv[1], sys.argv[2:]
    setup()
    if task == "lint":
        for cmd in LINTERS:
            print("$", " ".join(str(c.relative_to(ROOT)) if isinstance(c, Path) else c for c in cmd), flush=True)
            run(cmd)
    elif TASKS[task]:
        run(TASKS[task](args))


if __name__ == "__main__":
    main()
