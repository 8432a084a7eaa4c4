"""Evaluate a suite on an in-memory frame with Great Expectations' pandas datasource.

GX 1.x cannot run on DuckDB through SQLAlchemy (metric rows are fetched after the
connection is closed, see STACK_NOTES.md), so the runner loads each suite's frame with the
DuckDB API and hands it over here. A future in-database engine only has to return the same
``Outcome`` list for a suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expectations.suites import Check, Suite

# Unique-value checks report every copy of a duplicate; ask for more than we keep so that
# de-duplicating still leaves a useful sample.
PARTIAL_UNEXPECTED = 20
_GX_SEVERITY = {"blocking": "critical", "warning": "warning"}
_INDEX_KEY = "spine_check_index"


@dataclass(frozen=True)
class Outcome:
    """What one check found. Counts cover the rows the check evaluated (see README)."""

    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float | None
    sample: list[Any] = field(default_factory=list)
    observed_value: Any = None
    error: str | None = None


def evaluate(suite: Suite, frame: Any) -> list[Outcome]:
    """Run every check of ``suite`` on ``frame``; outcomes come back in check order."""
    import great_expectations as gx

    batch = (
        _context()
        .data_sources.add_pandas(f"{suite.entity}_frame")
        .add_dataframe_asset(suite.entity)
        .add_batch_definition_whole_dataframe("whole_frame")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    gx_suite = gx.ExpectationSuite(
        name=suite.entity,
        expectations=[_expectation(i, c) for i, c in enumerate(suite.checks)],
    )
    validation = batch.validate(
        gx_suite,
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED},
    )
    # GX does not keep suite order in its results; the index in meta maps them back.
    by_index = {r.expectation_config.meta[_INDEX_KEY]: r for r in validation.results}
    return [_outcome(by_index[i]) for i in range(len(suite.checks))]


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # A fresh in-memory context per suite: nothing persists between runs, and no telemetry
    # leaves a machine that may hold customer data.
    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _expectation(index: int, check: Check) -> Any:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    return ExpectationConfiguration(
        type=check.expectation,
        kwargs=dict(check.kwargs),
        meta={
            _INDEX_KEY: index,
            "dimension": check.dimension,
            "severity": check.severity,
            "owner": check.owner,
        },
        description=check.description,
        severity=_GX_SEVERITY[check.severity],
    ).to_domain_obj()


def _outcome(result: Any) -> Outcome:
    error = _error_message(result.exception_info)
    if error is not None:
        return Outcome(False, 0, 0, None, error=error)
    details = result.result or {}
    if "unexpected_count" not in details:
        # Aggregate checks (min, max, row count) judge the table as one element.
        failed = 0 if result.success else 1
        return Outcome(
            bool(result.success), 1, failed, 100.0 * failed,
            observed_value=details.get("observed_value"),
        )
    # GX skips nulls except in null checks; count only the rows it actually judged.
    evaluated = int(details["element_count"]) - int(details.get("missing_count") or 0)
    unexpected = int(details["unexpected_count"])
    return Outcome(
        success=bool(result.success),
        element_count=evaluated,
        unexpected_count=unexpected,
        unexpected_percent=100.0 * unexpected / evaluated if evaluated else 0.0,
        sample=list(details.get("partial_unexpected_list") or []),
    )


def _error_message(info: Any) -> str | None:
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    # When a metric fails, GX nests the exception under each failed metric's id.
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return nested.get("exception_message") or "expectation raised an exception"
    return None
