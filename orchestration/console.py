"""The console a run logs to: short lines a person reads, the whole story in the event log.

Dagster's console logger prints every failed step with its whole error chain, each link with
its stack, and dlt logs its own tracebacks beside it: a full disk made several hundred lines in
which the line that said what to do was lost. dbt prints a line per node and per test, about
700 for a build of the project. Below DEBUG the console shows each Dagster line as
`time step: message`, each failure in one line, dbt in a line per phase and its progress at
least every 10 s; a long step that says nothing is announced every 10 s (`heartbeat`). The
run's event log (the Dagster UI) keeps everything either way; at DEBUG (`spine run --verbose`,
and `dagster dev`, whose console logger defaults to it) the console shows everything too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import coloredlogs
import dagster as dg

from data_spine.resource_errors import cause_line

# "Dependencies for step X failed: ['a', 'a', 'b']": one name per output of a step, repeated.
_STEP_LIST = re.compile(r"\[('[^'\]]*'(?:, '[^'\]]*')*)\]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What dagster-dbt says of its own housekeeping before each command: not for a person.
_HOUSEKEEPING = ("Copying `", "A dbt subsetted execution is not being performed", "Finished dbt command")
PROGRESS_EVERY_S = 10.0


class Activity:
    """Which steps of the run are going, and when the console last said something."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.last_said = time.monotonic()

    def said(self) -> None:
        self.last_said = time.monotonic()

    def step(self, step_key: str, event_type: str) -> None:
        with self._lock:
            if event_type == "STEP_START":
                self.started[step_key] = time.monotonic()
            elif event_type in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED", "STEP_UP_FOR_RETRY"):
                self.started.pop(step_key, None)

    def running(self) -> list[tuple[str, float]]:
        now = time.monotonic()
        with self._lock:
            return [(key, now - at) for key, at in self.started.items()]


ACTIVITY = Activity()


class OneLineErrors(logging.Filter):
    """Cuts a record down to `step: message`, a failure to its first line and its cause; notes
    which steps run (the DEBUG records the handler leaves out say when a step starts)."""

    def __init__(self, shown_from: int) -> None:
        super().__init__()
        self.shown_from = shown_from

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is not None and event.step_key:
            ACTIVITY.step(event.step_key, event.event_type_value)
        if record.levelno < self.shown_from:
            return True  # the handler drops it
        error = getattr(event.event_specific_data, "error", None) if event and event.event_specific_data else None
        message = meta.get("orig_message") or record.getMessage()
        if message.startswith(_HOUSEKEEPING):
            return False
        if error is not None:
            head = message.split("\n\n", 1)[0].rstrip(".")
            message = f"{head}: {cause_line(error)} (full error in the Dagster UI)"
        else:
            message = _STEP_LIST.sub(lambda m: "[" + ", ".join(dict.fromkeys(m.group(1).split(", "))) + "]", message)
        step = meta.get("step_key")
        record.msg = f"{step}: {message}" if step else message
        record.args = ()
        record.exc_info, record.exc_text = None, None
        ACTIVITY.said()
        return True


class NoTracebacks(logging.Filter):
    """Keeps a library's log line, drops the traceback it attached."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


@dg.logger(
    config_schema=dg.colored_console_logger.config_schema,
    description="Dagster's colored console logger; below DEBUG, short lines and each failure in one line.",
)
def concise_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    if log.level > logging.DEBUG:
        shown_from = log.level
        # The logger takes every record, so the filter sees steps start; its handlers show
        # what the level asked for.
        log.setLevel(logging.DEBUG)
        for handler in log.handlers:
            handler.setLevel(shown_from)
            handler.setFormatter(_short_formatter(handler.formatter))
        log.addFilter(OneLineErrors(shown_from))
        # dlt logs to its own logger (stderr) from the steps that load, tracebacks included.
        dlt_log = logging.getLogger("dlt")
        if not any(isinstance(f, NoTracebacks) for f in dlt_log.filters):
            dlt_log.addFilter(NoTracebacks())
    return log


def _short_formatter(formatter: logging.Formatter | None) -> logging.Formatter:
    """The handler's formatter (coloured on a terminal only) with time and message only."""
    short = "%(asctime)s %(levelname)s %(message)s"
    if isinstance(formatter, coloredlogs.ColoredFormatter):
        return coloredlogs.ColoredFormatter(fmt=short, datefmt="%H:%M:%S")
    return logging.Formatter(fmt=short, datefmt="%H:%M:%S")


def is_verbose(run_config: dict) -> bool:
    """Whether the run's console shows everything: its console logger at DEBUG, Dagster's default."""
    level = run_config.get("loggers", {}).get("console", {}).get("config", {}).get("log_level", "DEBUG")
    return str(level).upper() == "DEBUG"


class DbtProgress(io.TextIOBase):
    """What dbt prints, as the console shows it: without colour codes unless on a terminal;
    unless `verbose`, its start and what it found, its progress at most every 10 s and its
    totals (dbt's own `Done. PASS=...` line), instead of a line per node."""

    _STARTED = re.compile(r"^Running with dbt=\S+")
    _FOUND = re.compile(r"^Found (.*)$")
    _NODE = re.compile(r"^(\d+) of (\d+) (OK|PASS|WARN|ERROR|FAIL|SKIP|NO-OP)\b")
    _DONE = re.compile(r"^Done\. ")
    _KEEP = re.compile(r"^(Database Error|Runtime Error|Compilation Error|Encountered an error)")

    def __init__(self, out: TextIO, command: str, verbose: bool) -> None:
        super().__init__()
        self.out, self.command, self.verbose = out, command, verbose
        self.colour = bool(getattr(out, "isatty", lambda: False)())
        self.pending = ""
        self.done = 0
        self.started = self.last = time.monotonic()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
        self.last = time.monotonic()
        ACTIVITY.said()

    def _line(self, line: str) -> None:
        plain = _ANSI.sub("", line)
        if self.verbose:
            self._say(line if self.colour else plain)
            return
        plain = plain.strip()
        if started := self._STARTED.match(plain):
            self._say(f"  {self.command}: {started.group(0)}")
        elif found := self._FOUND.match(plain):
            self._say(f"  {self.command}: {found.group(1)}")
        elif node := self._NODE.match(plain):
            self.done += 1
            if time.monotonic() - self.last >= PROGRESS_EVERY_S:
                elapsed = time.monotonic() - self.started
                self._say(f"  {self.command}: {self.done} of {node.group(2)} nodes done ({elapsed:.0f} s)")
        elif self._DONE.match(plain):
            self._say(f"  {self.command}: {plain} ({time.monotonic() - self.started:.0f} s)")
        elif self._KEEP.match(plain):
            self._say(f"  {self.command}: {plain}")


@contextlib.contextmanager
def dbt_console(command: str, run_config: dict) -> Iterator[None]:
    """dagster-dbt echoes each dbt event to standard output: shown as `DbtProgress` says."""
    progress = DbtProgress(sys.stdout, command, is_verbose(run_config))
    with contextlib.redirect_stdout(progress):
        yield
    progress.write("\n")


@contextlib.contextmanager
def heartbeat(out: TextIO | None = None, every_s: float = PROGRESS_EVERY_S) -> Iterator[None]:
    """While a run goes, names its running steps when the console has been quiet `every_s`:
    on `out`, by default the standard output of its start (dbt's steps swap it for a filter
    that keeps only dbt's own lines, see `dbt_console`)."""
    stream = out or sys.stdout
    stop = threading.Event()

    def echo(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def beat() -> None:
        while not stop.wait(1.0):
            if time.monotonic() - ACTIVITY.last_said < every_s:
                continue
            going = ACTIVITY.running()
            if going:
                steps = ", ".join(f"{key} ({elapsed:.0f} s)" for key, elapsed in sorted(going, key=lambda s: -s[1]))
                echo(f"{time.strftime('%H:%M:%S')} ... still running: {steps}")
            ACTIVITY.said()

    thread = threading.Thread(target=beat, name="console heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
