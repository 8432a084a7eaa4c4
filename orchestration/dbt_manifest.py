"""The dbt project as Dagster sees it, and the one step that prepares its manifest.

Loading the code location reads `dbt_project/target/manifest.json` and runs nothing. The
manifest is prepared the dagster-dbt way: under `dagster dev` each load prepares it when the
project changed (dagster-dbt's `prepare_if_dev` contract, with this project's dbt executable
and lock); `spine run`, `spine dev` and the test suite call `prepare()` first; a deployment
builds it once (`dagster-dbt project prepare-and-package --file
orchestration/dbt_manifest.py`).
"""

from __future__ import annotations

import fcntl
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev

from data_spine.settings import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt_project"
dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)

# The dbt installed next to this interpreter (the project's venv), so runs work whether or not
# the venv's bin folder is on PATH (`.venv/bin/python -m ...`, IDEs, the Dagster daemon).
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"


def dbt_cli() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)


def _newest_project_file(project: DbtProject) -> float:
    files = [project.project_dir / "dbt_project.yml"]
    for folder in ("models", "macros", "seeds", "tests", "snapshots", "analyses"):
        files.extend(p for p in (project.project_dir / folder).rglob("*") if p.is_file())
    return max(p.stat().st_mtime for p in files if p.exists())


def stale(project: DbtProject = dbt_project) -> bool:
    """Whether the manifest is missing (a fresh clone) or older than the project's files."""
    manifest = project.manifest_path
    return not manifest.exists() or manifest.stat().st_mtime < _newest_project_file(project)


def prepare(project: DbtProject = dbt_project) -> Path:
    """Parse the project when its manifest is stale, so the asset graph matches the dbt code
    it is loaded with. Several processes may prepare at once on a fresh clone (test workers,
    the webserver and the daemon): one parses, the others wait and find it done."""
    if stale(project):
        target = project.project_dir / project.target_path  # relative to the project, not here
        target.mkdir(parents=True, exist_ok=True)
        with open(target / ".parse.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if stale(project):
                dbt_cli().cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project.manifest_path


def manifest_path(project: DbtProject = dbt_project) -> Path:
    """The prepared manifest; a clear error, not a parse, when there is none."""
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"no dbt manifest at {project.manifest_path}: prepare it first with `spine prepare` "
            "(or `dagster-dbt project prepare-and-package --file orchestration/dbt_manifest.py`)"
        )
    return project.manifest_path


# dagster-dbt's own `prepare_if_dev` runs `dbt` from PATH, which the code server started by
# `dagster dev` may not have (the venv not activated): prepare with the venv's dbt instead.
if using_dagster_dev():
    prepare()
