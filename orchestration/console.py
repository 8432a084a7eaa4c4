"""The console a run logs to: one line per failure, the full error in the run's event log.

Dagster's console logger prints every failed step with its whole error chain, each link with
its stack, and dlt logs its own tracebacks beside it: a full disk made several hundred lines in
which the line that said what to do was lost. The run's event log (the Dagster UI) keeps
everything either way; at DEBUG (`spine run --verbose`) the console shows everything too.
"""

from __future__ import annotations

import logging
import re

import dagster as dg

from data_spine.resource_errors import cause_line

# "Dependencies for step X failed: ['a', 'a', 'b']": one name per output of a step, repeated.
_STEP_LIST = re.compile(r"\[('[^'\]]*'(?:, '[^'\]]*')*)\]")


class OneLineErrors(logging.Filter):
    """Cuts a record carrying an error down to its first line and the error's cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
        error = getattr(event.event_specific_data, "error", None) if event and event.event_specific_data else None
        message = record.getMessage()
        if error is not None:
            head = message.split("\n\n", 1)[0].rstrip(".")
            record.msg = f"{head}: {cause_line(error)} (full error in the Dagster UI)"
        else:
            record.msg = _STEP_LIST.sub(lambda m: "[" + ", ".join(dict.fromkeys(m.group(1).split(", "))) + "]", message)
        record.args = ()
        record.exc_info, record.exc_text = None, None
        return True


class NoTracebacks(logging.Filter):
    """Keeps a library's log line, drops the traceback it attached."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


@dg.logger(
    config_schema=dg.colored_console_logger.config_schema,
    description="Dagster's colored console logger, with each failure in one line below DEBUG.",
)
def concise_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    if log.level > logging.DEBUG:
        log.addFilter(OneLineErrors())
        # dlt logs to its own logger (stderr) from the steps that load, tracebacks included.
        dlt_log = logging.getLogger("dlt")
        if not any(isinstance(f, NoTracebacks) for f in dlt_log.filters):
            dlt_log.addFilter(NoTracebacks())
    return log
