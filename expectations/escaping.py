"""Values from the data as reports print them: inert, bounded and on one line.

A name, an email or a subject holds whatever its source let through: markup, control
characters, megabytes. Samples are bounded, and their control characters written out, before
they are stored (`sample_text`); each report then escapes for its own format: the HTML
scorecard through Jinja's autoescape, the Markdown digest with `markdown_text`, Slack's mrkdwn
with `slack_text`.
"""

from __future__ import annotations

import re
from typing import Any

# C0 (NUL, line breaks, escape included), DEL and C1.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SAMPLE_TEXT_LIMIT = 120

# HTML's specials as entities (Markdown passes raw HTML through), and the characters that
# start Markdown's code, emphasis, links, strikethrough and table cells.
_MARKDOWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: "\\" + c for c in "\\`*_[]|~"}})
# The three characters Slack asks to escape (https://api.slack.com/reference/surfaces/formatting).
_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def sample_text(value: str, limit: int = SAMPLE_TEXT_LIMIT) -> str:
    """`value` cut to `limit` characters (with an ellipsis), control characters written as
    `\\xNN` so that a NUL byte or a line break shows where it is."""
    clipped = value if len(value) <= limit else value[:limit] + "…"
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", clipped)


def markdown_text(value: Any) -> str:
    """`value` as Markdown text that renders literally and stays on its line and in its table
    cell: no tag, link, emphasis or code span can start in it."""
    return CONTROL.sub(" ", str(value)).translate(_MARKDOWN)


def slack_text(value: str) -> str:
    """`value` as Slack mrkdwn text: `<`, `>` and `&` escaped, so no link, mention or
    `<!channel>` broadcast can be formed from it."""
    return value.translate(_SLACK)
