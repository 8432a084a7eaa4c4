"""How a step's error is told in one line (alerts, the run's summary)."""

from __future__ import annotations

import re

from dagster._utils.error import SerializableErrorInfo

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line_of(error: SerializableErrorInfo) -> str:
    """`Class: first line` of the innermost error (what went wrong, not Dagster's wrapping of
    it); a `Failure` raised on purpose is told by its own words."""
    while error.cause is not None:
        error = error.cause
    first = first_line(error.message or "")
    # The message repeats the class by its full path: `dagster._core....Failure: ...`.
    first = re.sub(rf"^[\w.]*\b{re.escape(error.cls_name or '')}: ", "", first) if error.cls_name else first
    return first if error.cls_name in (None, "Failure") else f"{error.cls_name}: {first}"


def first_line(text: str, limit: int = 300) -> str:
    """The first non-blank line of a message, without terminal colours, at most `limit` long."""
    plain = _ANSI.sub("", text)
    first = next((line.strip() for line in plain.splitlines() if line.strip()), "no message")
    return first if len(first) <= limit else first[: limit - 1] + "…"
