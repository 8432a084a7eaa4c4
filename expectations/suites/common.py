"""Values several suites share."""

import csv
from pathlib import Path

import yaml

from expectations.escaping import CONTROL
from expectations.suite import Check, check

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"

# A pragmatic address pattern: one @, no spaces or commas, a dotted domain ending in letters.
EMAIL_REGEX = r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"


def _currencies() -> list[str]:
    """The currencies the business reports (those with a planning rate in the exchange_rates seed)."""
    with (DBT_PROJECT / "seeds" / "exchange_rates.csv").open() as f:
        return sorted({row["currency"].strip().lower() for row in csv.DictReader(f)})


def _plan_tiers() -> list[str]:
    """The plan tiers the business sells (dbt var plan_tiers); anything else, `unmapped` included, is flagged."""
    return list(yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text())["vars"]["plan_tiers"])


CURRENCIES = _currencies()
PLAN_TIERS = _plan_tiers()
# Event names follow <domain>.<action>.<object>, lower-case (the governance naming rules).
EVENT_NAME_REGEX = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


def hours_after_as_of(column: str) -> str:
    """SQL for how far `column` lies after the as-of time, in hours (negative: before it)."""
    return f"(date_part('epoch', {column}) - date_part('epoch', $as_of)) / 3600.0"


# Free text that consumers display or pass on (names, emails, subjects): what a sane value fits in.
NAME_MAX_LENGTH = 256
SUBJECT_MAX_LENGTH = 1000
# Control characters (C0 with NUL, DEL, C1), and markup a page or an agent would act on: a tag
# (`<` then a letter, `/`, `!` or `?`), a script URL, or an inline event handler (`onerror=`).
# `?` is written `\x3f`: Great Expectations takes a literal `?` in a query for a parameter. A
# handler's name starts a word: spelt without `\b`, which PostgreSQL reads as a backspace.
CONTROL_REGEX = CONTROL.pattern  # the characters the reports also refuse to print raw
MARKUP_REGEX = r"<[a-z/!\x3f]|(java|vb)script\s*:|(^|[^a-z0-9_])on[a-z]+\s*="
_PLAIN_TEXT_CAUSES = (
    "a form, import or integration that accepts any text, including pasted markup or binary data",
    "a probe or an attack against the systems that display the field",
)


def text_problems(column: str, max_length: int) -> str:
    """SQL naming what makes a free-text value unsafe to display or pass on (`control
    characters`, `markup`, `over N characters`, comma-separated); null when it is plain text."""
    return f"""nullif(concat_ws(', ',
        case when $regex_search({column}, '{CONTROL_REGEX}') then 'control characters' end,
        case when $regex_search({column}, '{MARKUP_REGEX}', 'i') then 'markup' end,
        case when length({column}) > {max_length} then 'over {max_length} characters' end), '')"""


def plain_text_check(
    name: str, owner: str, column: str, what: str, max_length: int = NAME_MAX_LENGTH, action: str = ""
) -> Check:
    """A validity warning on the column `text_problems` derives as `<column>_problems`: it counts
    the values holding control characters, markup or more than `max_length` characters, and its
    samples name the record and what was found, never the value."""
    return check(
        name,
        "validity",
        "warning",
        owner,
        "expect_column_values_to_be_null",
        f"{what} are plain text: no control characters, markup, or more than {max_length} characters",
        column=f"{column}_problems",
        causes=_PLAIN_TEXT_CAUSES,
        action=action
        or "Correct the sampled records at the source and validate the field where it is "
        "entered; until then, whatever displays it must escape it.",
    )


def with_text_problems(columns: dict[str, int]) -> str:
    """SQL select items `<column>_problems` for each column and its length limit."""
    return ",\n            ".join(f"{text_problems(c, n)} as {c}_problems" for c, n in columns.items())
