"""A full disk, a folder that cannot be written or created, a warehouse another process holds:
said in one line that names the path and what to do, instead of the traceback.

Such errors reach the command line two ways: raised in this process before or after the job
(creating folders, generating the company, writing alert state, reading the warehouse for
the summary), or recorded in a run's step failures, where Dagster, dlt and dbt have wrapped
them (`OSError` inside `PipelineStepFailed` inside Dagster's step error, or only the text of a
DuckDB error in a dbt failure). Both are searched along their cause chain, for an errno or for
the words the OS and DuckDB use.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from data_spine.settings import settings

# The words each kind is said in, by the OS (`strerror`) and by DuckDB.
NO_SPACE, READ_ONLY, DENIED, MISSING, LOCKED = "no space", "read-only", "denied", "missing", "locked"
_ERRNOS = {
    errno.ENOSPC: NO_SPACE,
    errno.EDQUOT: NO_SPACE,
    errno.EROFS: READ_ONLY,
    errno.EACCES: DENIED,
    errno.EPERM: DENIED,
    errno.ENOENT: MISSING,
    errno.ENOTDIR: MISSING,
}
_PHRASES = (
    (LOCKED, re.compile(r"Could not set lock on file")),
    (NO_SPACE, re.compile(r"No space left on device|Disk quota exceeded|\[Errno 28\]")),
    (READ_ONLY, re.compile(r"Read-only file system|\[Errno 30\]")),
    (DENIED, re.compile(r"Permission denied|\[Errno 13\]")),
)
_QUOTED_PATH = re.compile(r"""["'](/[^"'\n]+)["']""")
# DuckDB: `Could not set lock on file "<path>": Conflicting lock is held in <program> (PID <n>)`
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


@dataclass(frozen=True)
class ResourceProblem:
    kind: str
    path: Path | None
    holder: str = ""  # the program and PID holding a lock, when DuckDB names them

    def describe(self) -> str:
        path = self.path or settings().data_dir
        folder = path if path.is_dir() else path.parent
        setting = _setting_for(path)
        where = f"{path} ({setting})" if setting else str(path)
        if self.kind == NO_SPACE:
            return (
                f"no space left on device writing {'to ' if self.path is None else ''}{path}: free space "
                f"(df -h {folder}) and run again; the warehouse is intact"
            )
        if self.kind == READ_ONLY:
            return (
                f"{where} is on a read-only file system: remount it read-write or choose a writable folder, "
                "then run again; nothing was changed"
            )
        if self.kind == DENIED:
            return (
                f"permission denied writing {where}: give this user write access to {folder} or choose "
                "another folder, then run again; nothing was changed"
            )
        if self.kind == MISSING:
            return (
                f"cannot create {where}: {_first_missing(path)} does not exist or is not a folder: create it "
                "or choose a folder that can be created, then run again"
            )
        holder = f" ({self.holder})" if self.holder else ""
        return (
            f"the warehouse {path} is locked by another process{holder}: close it (a DuckDB shell or notebook "
            "with the file open) and run again; nothing was changed"
        )


class ResourceError(click.ClickException):
    """A `ResourceProblem` as click shows an error: one line, exit status 1, no traceback."""

    def __init__(self, problem: ResourceProblem, command: str = "spine"):
        super().__init__(problem.describe())
        self.problem, self.command = problem, command

    def show(self, file=None) -> None:
        click.echo(click.style(f"{self.command}: {self.format_message()}", fg="red"), file=file, err=True)


def explain(exc: BaseException) -> ResourceProblem | None:
    """The resource problem behind an exception raised in this process, if one is."""
    return _best(_in_exception(exc))


def explain_run(result) -> ResourceProblem | None:
    """The resource problem behind a failed run's step failures, if one is."""
    return _best(
        problem
        for event in result.get_step_failure_events()
        if event.step_failure_data
        for problem in _in_error_info(event.step_failure_data.error)
    )


def cause_line(error) -> str:
    """One line for a Dagster error record (`SerializableErrorInfo`): the line of its chain
    that names a resource problem if one does, else the first line of its root cause."""
    for link in _chain(error, lambda info: info.cause or info.context):
        for line in link.message.splitlines():
            found = next((m for _, phrase in _PHRASES if (m := phrase.search(line))), None)
            if found:
                # From the sentence that says it: wrappers put theirs first.
                sentence = line.rfind(". ", 0, found.start())
                return line[sentence + 2 if sentence >= 0 else 0 :].strip()
    root = list(_chain(error, lambda info: info.cause))[-1]
    return next((line.strip() for line in root.message.splitlines() if line.strip()), root.cls_name or "error")


def check_run(result, command: str = "spine run") -> None:
    """Raise the `ResourceError` a failed run hit, if it hit one."""
    problem = explain_run(result)
    if problem:
        raise ResourceError(problem, command)


class ResourceErrorsGroup(click.Group):
    """A command group whose commands end in one line on a resource problem (see `ResourceError`)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            problem = explain(exc)
            if problem is None:
                raise
            raise ResourceError(problem, f"spine {ctx.invoked_subcommand or ''}".strip()) from None


def _in_exception(exc: BaseException) -> Iterator[ResourceProblem]:
    for link in _chain(exc, lambda e: e.__cause__ or e.__context__):
        if isinstance(link, OSError) and link.errno in _ERRNOS:
            kind = _ERRNOS[link.errno]
            path = Path(os.fsdecode(link.filename)) if link.filename else None
            # A missing file is a fault of the folders only where they are ours to create.
            if kind != MISSING or (path is not None and _ours(path)):
                yield ResourceProblem(kind, path)
                continue
        problem = _from_text(str(link))
        if problem:
            yield problem


def _in_error_info(error) -> Iterator[ResourceProblem]:
    for link in _chain(error, lambda info: info.cause or info.context):
        problem = _from_text(link.message)
        if problem:
            yield problem


def _best(problems) -> ResourceProblem | None:
    """The first problem that names its path, else the first."""
    first = None
    for problem in problems:
        if problem.path is not None:
            return problem
        first = first or problem
    return first


def _chain(error, next_of) -> Iterator:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = next_of(error)


def _from_text(message: str) -> ResourceProblem | None:
    for kind, phrase in _PHRASES:
        if phrase.search(message):
            path = _QUOTED_PATH.search(message)
            holder = _LOCK_HOLDER.search(message) if kind == LOCKED else None
            return ResourceProblem(
                kind,
                Path(path.group(1)) if path else None,
                f"{holder.group(1)}, PID {holder.group(2)}" if holder else "",
            )
    return None


def _ours(path: Path) -> bool:
    """Whether `path` is (or is a parent of) a folder or file the platform creates."""
    cfg = settings()
    places = [cfg.data_dir, cfg.warehouse, cfg.landing_dir, cfg.dagster_home]
    return any(path == place or path in place.parents or place in path.parents for place in places)


def _setting_for(path: Path) -> str:
    """The setting that chose `path`, for a person who wants to put it elsewhere ("" if none)."""
    cfg = settings()
    if path == cfg.dagster_home or cfg.dagster_home in path.parents:
        return "DAGSTER_HOME"
    if path.name.startswith(cfg.warehouse.name) and path.parent == cfg.warehouse.parent:
        return "SPINE_WAREHOUSE"
    return "SPINE_DATA_DIR" if path == cfg.data_dir or cfg.data_dir in path.parents else ""


def _first_missing(path: Path) -> Path:
    """The outermost folder on the way to `path` that is missing (or is a file)."""
    for parent in reversed(path.parents):
        if not parent.is_dir():
            return parent
    return path
