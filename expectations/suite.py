"""What a suite is: plain data, readable without importing an engine.

An entity's suite (customer, contact, revenue, ...) is a list of batches. A batch is the SQL
that selects what is checked (a mart, or a source model the entity is built from, with
derived columns for cross-column and time-relative rules) and the checks run on it. A check
names a Great Expectations expectation type with its arguments and carries the governance
metadata the scorecard and the alerts need: dimension, severity, owner, likely causes and
the action to take.

The SQL may use `$as_of` (a TIMESTAMP literal: midnight UTC at the start of the as-of day),
so timeliness is judged against the time the data describes, not the wall clock. A batch over
an incremental event-grain mart may use `$written_last` (see `Batch.incremental`), so a daily
audit checks the rows the day's build wrote rather than the whole history again.

Nothing here imports Great Expectations (seconds to import): the orchestrator and the CLI
read suites to build their graph and summaries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A dbt model named in a batch's SQL (`marts.customers`, `staging.stg_zendesk__tickets`).
_MODEL_IN_SQL = re.compile(r"\b(?:marts|staging)\.([a-z_0-9]+)")

# In a batch's SQL: the rows of its incremental mart that an audit of what changed checks.
WRITTEN_LAST = "$written_last"

DIMENSIONS = ("completeness", "accuracy", "consistency", "timeliness", "validity", "uniqueness")
SEVERITIES = ("blocking", "warning")

# Owners are teams, as in the entity contracts: whoever can fix the data at its source.
SALES_CS = "Sales & CS"
FINANCE = "Finance"
SUPPORT = "Customer Support"
PRODUCT = "Product & Analytics"
DATA_ENG = "Data Engineering"

# What usually breaks a dimension and what to do first, when a check names nothing better.
DEFAULT_CAUSES = {
    "completeness": (
        "the field is optional in the source system's form or import",
        "a connector or model stopped filling the field",
    ),
    "accuracy": (
        "the two systems are updated by different people at different times",
        "a manual edit in one system that was never made in the other",
    ),
    "consistency": ("a model change broke an invariant between marts", "the marts were built from different loads"),
    "timeliness": (
        "the source stopped delivering or the connector failed",
        "the schedule or sensor that loads it is off",
    ),
    "validity": (
        "free-text entry without validation at the source",
        "a client or integration sending values outside the contract",
    ),
    "uniqueness": ("the same record entered twice at the source", "a load or a join that multiplies rows"),
}
DEFAULT_ACTION = {
    "completeness": "Fill the missing values at the source; the next run picks them up.",
    "accuracy": "Reconcile the records named in the sample with the system that owns the field.",
    "consistency": "Inspect the model that builds the table and rebuild the marts from one load.",
    "timeliness": "Check the source's last load in Dagster and its connector's logs.",
    "validity": "Correct the sampled records at the source and add validation to its form.",
    "uniqueness": "Merge or delete the duplicates at the source, or fix the join that repeats them.",
}


@dataclass(frozen=True)
class Check:
    """One expectation, with what the scorecard and alerts need to speak about it."""

    name: str  # stable id, unique within the entity: results, alerts and tests refer to it
    expectation: str  # Great Expectations type, e.g. `expect_column_values_to_be_unique`
    kwargs: Mapping[str, Any]
    dimension: str
    severity: str
    owner: str
    description: str
    causes: tuple[str, ...] = ()
    action: str = ""

    def __post_init__(self) -> None:
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"check {self.name!r}: unknown dimension {self.dimension!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"check {self.name!r}: unknown severity {self.severity!r}")

    @property
    def column(self) -> str | None:
        """The column (or columns, comma-separated) looked at; None for table checks."""
        if "column" in self.kwargs:
            return self.kwargs["column"]
        if "column_list" in self.kwargs:
            return ", ".join(self.kwargs["column_list"])
        return None

    @property
    def likely_causes(self) -> tuple[str, ...]:
        return self.causes or DEFAULT_CAUSES[self.dimension]

    @property
    def suggested_action(self) -> str:
        return self.action or DEFAULT_ACTION[self.dimension]


@dataclass(frozen=True)
class Batch:
    """The rows a group of checks looks at, selected by SQL inside the warehouse."""

    name: str  # usually the mart's name; shown as the table in results
    sql: str
    checks: tuple[Check, ...]
    # Columns that name a failing record in samples (Great Expectations' index columns).
    key: tuple[str, ...] = ()
    # Values of these columns are masked before they are stored or shown.
    pii: frozenset[str] = field(default_factory=frozenset)
    # The incremental mart (`marts.usage_events`) whose rows the SQL's `$written_last` condition
    # narrows the batch to: the rows its latest build wrote (`refreshed_at` equal to its newest
    # value) in an audit of what changed, every row in a whole-history audit. Only row-level
    # checks belong in such a batch: a count or an aggregate would describe the slice.
    incremental: str | None = None
    # Whether the validation computes the rows once (a temporary table) before its metrics run;
    # False for a plain read of a large table, cheaper where it lies than copied.
    materialize: bool = True

    def __post_init__(self) -> None:
        if not self.checks:
            raise ValueError(f"batch {self.name!r} has no checks")
        if (WRITTEN_LAST in self.sql) != (self.incremental is not None):
            raise ValueError(f"batch {self.name!r}: `{WRITTEN_LAST}` and `incremental` go together")

    def sliced(self, whole_history: bool) -> bool:
        """Whether an audit (of every row, or of what changed) checks only the rows written last."""
        return self.incremental is not None and not whole_history

    def written_last(self, whole_history: bool) -> str:
        """The SQL condition `$written_last` stands for."""
        if not self.sliced(whole_history):
            return "true"
        return f"refreshed_at = (select max(refreshed_at) from {self.incremental})"


@dataclass(frozen=True)
class Suite:
    entity: str
    owner: str
    description: str
    # The marts consumers read: copied to the serving schema when every blocking check passes.
    publishes: tuple[str, ...]
    batches: tuple[Batch, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.checks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"suite {self.entity!r}: check names used twice: {duplicated}")

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(c for b in self.batches for c in b.checks)

    @property
    def models_read(self) -> tuple[str, ...]:
        """The dbt models the entity is audited and published from: its marts and the source
        models its checks read. When one of them is not rebuilt, the entity is held back."""
        return tuple(sorted({m for b in self.batches for m in _MODEL_IN_SQL.findall(b.sql)} | set(self.publishes)))

    def key_of(self, table: str) -> tuple[str, ...]:
        """The key of a published mart (its batch's), empty when no batch names one."""
        return next((b.key for b in self.batches if b.name == table and b.key), ())

    def sliced(self, whole_history: bool) -> bool:
        """Whether the audit checks some of its batches on the rows written last."""
        return any(b.sliced(whole_history) for b in self.batches)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The dimensions this suite has checks for, in the canonical order."""
        present = {c.dimension for c in self.checks}
        return tuple(d for d in DIMENSIONS if d in present)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"suite {self.entity!r} has no check {name!r}")


def check(
    name: str,
    dimension: str,
    severity: str,
    owner: str,
    expectation: str,
    description: str,
    *,
    causes: tuple[str, ...] = (),
    action: str = "",
    **kwargs: Any,
) -> Check:
    return Check(name, expectation, kwargs, dimension, severity, owner, description, causes, action)


def where(column: str, value: str) -> dict[str, str]:
    """Restrict a check to the rows where `column` equals `value` (a GX row condition)."""
    return {"row_condition": f'col("{column}")=="{value}"', "condition_parser": "great_expectations"}
