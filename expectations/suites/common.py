"""Values several suites share."""

import csv
from pathlib import Path

import yaml

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
    return f"(epoch({column}) - epoch($as_of)) / 3600.0"
