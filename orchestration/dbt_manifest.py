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
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev
from packaging import version

from data_spine.settings import PROJECT_ROOT, settings
from data_spine.warehouse import Warehouse

DBT_DIR = PROJECT_ROOT / "dbt_project"
_WAREHOUSE = Warehouse.of(settings())
# Each warehouse target has its own parse state (a parse for one is stale for the other), so
# processes on both targets share a checkout without parsing the project again and again.
dbt_project = DbtProject(
    project_dir=DBT_DIR,
    profiles_dir=DBT_DIR,
    target=_WAREHOUSE.dbt_target,
    target_path=Path("target") if not _WAREHOUSE.is_postgres else Path("target") / "postgres",
)


# The dbt installed next to this interpreter (the project's venv), so runs work whether or not
# the venv's bin folder is on PATH (`.venv/bin/python -m ...`, IDEs, the Dagster daemon).
_VENV_DBT = shutil.which("dbt", path=str(Path(sys.executable).parent))
DBT_EXECUTABLE = _VENV_DBT or "dbt"


class SpineDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt CLI resource without two things it does before every command, each
    seconds of every run for nothing here:

    - it runs `dbt --version` in a process of its own to learn the version: with the venv's
      dbt, that is the installed dbt-core's;
    - it opens a dbt adapter in the step's own process (importing dbt and reading the profile
      again), which serves only `fetch_row_counts` and `fetch_column_metadata`, unused here.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if _VENV_DBT and self.dbt_executable == _VENV_DBT:
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args):
        return None

    def _get_unique_target_path(self, *, context) -> Path:
        """dagster-dbt's folder for one dbt command (its artifacts and log, 15-20 MB for a
        build); the folders of commands older than `INVOCATIONS_KEPT_DAYS` are removed first,
        as dagster-dbt keeps every one."""
        path = super()._get_unique_target_path(context=context)
        prune_invocations(path.parent if path.is_absolute() else Path(self.project_dir) / path.parent)
        return path

    def cli(self, args: Sequence[str], *, target_path: Path | None = None, context=None, **kwargs) -> DbtCliInvocation:
        """dagster-dbt's command, started from the parse state the last command on the same
        warehouse with the same vars left (`keep_parse_state`), when there is one."""
        target_path = target_path or self._get_unique_target_path(context=context)
        folder = target_path if target_path.is_absolute() else Path(self.project_dir) / target_path
        state = parse_state(args, self.target)
        if state.exists() and not (folder / _PARTIAL_PARSE).exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state, folder / _PARTIAL_PARSE)
        return super().cli(args, target_path=target_path, context=context, **kwargs)


# How long the folder of each dbt command (dagster-dbt's, in the target folder) is kept: long
# enough to read a failed run's artifacts, short enough that daily runs do not fill the disk.
INVOCATIONS_KEPT_DAYS = 7
# dagster-dbt's names: `<op>-<run id[:7]>-<random[:7]>`, or `<random[:7]>` outside a run.
_INVOCATION = re.compile(r"^(?:\w+-[0-9a-f]{7}-)?[0-9a-f]{7}$")


def prune_invocations(target: Path, days: float = INVOCATIONS_KEPT_DAYS) -> list[Path]:
    """Remove the folders of dbt commands not written to for `days`; returns them."""
    cutoff = time.time() - days * 86_400
    removed = []
    for folder in target.iterdir() if target.is_dir() else ():
        if folder.is_dir() and _INVOCATION.match(folder.name) and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for state in (target / _PARSE_STATES).glob("*.msgpack"):
        if state.stat().st_mtime < cutoff:
            state.unlink(missing_ok=True)
            removed.append(state)
    return removed


# dbt starts a command from the parse state in its target folder only when the profile's
# connection and the vars are those the state was made with, and parses the whole project
# otherwise (seconds at any size). The prepared state serves the configured warehouse; a run on
# another one (`spine run` with another SPINE_WAREHOUSE or target, a second data folder) would
# parse in full on every run. So each command's state is kept per warehouse and vars, and the
# next such command starts from it. dbt checks every state it is given, so a stale one costs a
# parse, never a wrong build.
_PARSE_STATES = "parse_states"
_PARTIAL_PARSE = "partial_parse.msgpack"
# What profiles.yml reads from the environment: another value is another profile to dbt.
_PROFILE_ENV = ("SPINE_WAREHOUSE", "SPINE_POSTGRES_URL", "SPINE_DBT_MEMORY_LIMIT")


def parse_state(args: Sequence[str], target: str | None, project: DbtProject = dbt_project) -> Path:
    """Where the parse state of dbt commands with `args` (their `--vars`) on the dbt `target`
    and this environment's warehouse is kept. Named by a digest: the URL may hold a password."""
    args = [str(a) for a in args]
    values = args[args.index("--vars") + 1] if "--vars" in args[:-1] else ""
    identity = json.dumps([target, values, *(os.environ.get(name) for name in _PROFILE_ENV)])
    name = hashlib.sha256(identity.encode()).hexdigest()[:16]
    # Beside the commands' own folders (dagster-dbt's), pruned with them.
    return project.project_dir / "target" / _PARSE_STATES / f"{name}.msgpack"


def keep_parse_state(invocation: DbtCliInvocation) -> None:
    """After a dbt command: its parse state, for the next command on the same warehouse with
    the same vars (`SpineDbtCliResource.cli`)."""
    made = invocation.target_path / _PARTIAL_PARSE
    args = [str(a) for a in invocation.process.args]
    if not made.exists() or "--target" not in args[:-1]:
        return
    state = parse_state(args, args[args.index("--target") + 1])
    state.parent.mkdir(parents=True, exist_ok=True)
    scratch = state.with_name(f".{state.name}.{os.getpid()}")
    shutil.copyfile(made, scratch)
    os.replace(scratch, state)  # whole, for a command starting from it meanwhile


def dbt_cli() -> DbtCliResource:
    return SpineDbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE, target=dbt_project.target)


# What dbt's profile opens without the `warehouse_path` var (dbt_project/profiles.yml).
_PROFILE_WAREHOUSE_ENV, _PROFILE_WAREHOUSE_DEFAULT = "SPINE_WAREHOUSE", "../data/warehouse.duckdb"
# The vars the prepared manifest was parsed with, beside it.
_PARSE_VARS = "parse_vars.json"


def dbt_vars(as_of: date, warehouse: Path, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The vars every dbt command of the pipeline is given: the day the numbers describe and,
    only when the profile would open another file, the warehouse.

    dbt parses the whole project again whenever its vars or its profile's connection (the
    warehouse file) differ from the last parse (seconds on every run), so they carry nothing
    that is already known: dagster-dbt starts each command from the prepared parse state,
    which `prepare` made with these same vars on the configured warehouse."""
    values = {"as_of_date": as_of.isoformat()}
    configured = env.get(_PROFILE_WAREHOUSE_ENV, _PROFILE_WAREHOUSE_DEFAULT)
    # DuckDB resolves a relative path from dbt's working folder, the project's.
    if not configured or (DBT_DIR / configured).resolve() != warehouse.resolve():
        values["warehouse_path"] = str(warehouse)
    return values


def vars_args(values: Mapping[str, str]) -> list[str]:
    return ["--vars", json.dumps(dict(values), sort_keys=True)]


def _default_vars(as_of: date | None = None) -> dict[str, str]:
    """The vars of a run on the configured warehouse (as of `as_of`, else the configured day,
    else today in UTC, as the warehouse resource decides)."""
    cfg = settings()
    return dbt_vars(as_of or cfg.as_of or datetime.now(UTC).date(), cfg.warehouse)


def _project_files(project: DbtProject) -> list[Path]:
    files = [project.project_dir / "dbt_project.yml"]
    for folder in ("models", "macros", "seeds", "tests", "snapshots", "analyses"):
        files.extend(p for p in (project.project_dir / folder).rglob("*") if p.is_file())
    return sorted(p for p in files if p.exists())


def _newest_project_file(project: DbtProject) -> float:
    return max(p.stat().st_mtime for p in _project_files(project))


def project_digest(project: DbtProject = dbt_project) -> str:
    """A digest of the dbt project's code (its files and the dbt version that reads them): the
    same for every parse of the same code, where the manifest's timestamps are not."""
    digest = hashlib.sha256(importlib.metadata.version("dbt-core").encode())
    for path in _project_files(project):
        digest.update(str(path.relative_to(project.project_dir)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _target(project: DbtProject) -> Path:
    return project.project_dir / project.target_path  # relative to the project, not here


def stale(project: DbtProject = dbt_project, as_of: date | None = None) -> bool:
    """Whether the manifest is missing (a fresh clone) or older than the project's files, or,
    given the day of a run (`as_of`), its parse state was made with other vars than that run's
    dbt commands pass."""
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_project_file(project):
        return True
    if as_of is None:  # only the asset graph is wanted: the vars change nothing in it
        return False
    try:
        return json.loads((_target(project) / _PARSE_VARS).read_text()) != _default_vars(as_of)
    except (FileNotFoundError, ValueError):
        return True


def prepare(project: DbtProject = dbt_project, as_of: date | None = None) -> Path:
    """Parse the project when its manifest is stale, so the asset graph matches the dbt code
    it is loaded with, and the dbt commands of a run as of `as_of` start from its parse state
    (dbt's partial parsing) instead of parsing the project again.

    Several processes may prepare at once (test workers, the webserver and the daemon): one
    parses, the others wait and find it done. The parse is written beside the target folder
    and moved in file by file, so a process loading the definitions meanwhile reads a whole
    manifest, old or new."""
    if stale(project, as_of):
        target = _target(project)
        target.mkdir(parents=True, exist_ok=True)
        with open(target / ".parse.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if stale(project, as_of):
                values = _default_vars(as_of)
                scratch = target / f".parse-{os.getpid()}"
                shutil.rmtree(scratch, ignore_errors=True)
                dbt_cli().cli(["parse", "--quiet", *vars_args(values)], target_path=scratch).wait()
                (scratch / _PARSE_VARS).write_text(json.dumps(values, sort_keys=True))
                for name in ("partial_parse.msgpack", "semantic_manifest.json", _PARSE_VARS, "manifest.json"):
                    if (scratch / name).exists():
                        os.replace(scratch / name, target / name)
                shutil.rmtree(scratch, ignore_errors=True)
    return project.manifest_path


def prepare_for_run(as_of: date, warehouse: Path, project: DbtProject = dbt_project) -> None:
    """Before a run's first dbt command: the parse state for the run's day, when the run is on
    the configured warehouse (the one the prepared parse serves). `spine run` starts that
    parse in the background while the sources load; this waits for it (the parse lock), or
    makes it when nobody did (a run launched from the UI on a new day)."""
    if dbt_vars(as_of, warehouse) == _default_vars(as_of):
        prepare(project, as_of)


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
