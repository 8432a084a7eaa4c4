"""Run the suites against the warehouse and record the outcome in ``quality.validation_results``.

DuckDB allows a single writer process, and the orchestrator, dbt and ingestion all want to
write the same file. So the runner never holds a connection while it computes: it loads
every frame through one read-only connection, closes it, evaluates the checks in memory, and
then opens a read-write connection once, briefly, to append the results.
"""

from __future__ import annotations

import json
import math
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import duckdb

from expectations.suites import SUITES, Check, Suite, get_suite

RESULTS_TABLE = "quality.validation_results"
SAMPLE_SIZE = 5

RESULTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {RESULTS_TABLE} (
    run_id             VARCHAR   NOT NULL,
    validated_at       TIMESTAMP NOT NULL,  -- UTC
    as_of              TIMESTAMP NOT NULL,  -- UTC reference time for timeliness
    entity             VARCHAR   NOT NULL,
    table_name         VARCHAR   NOT NULL,
    dimension          VARCHAR   NOT NULL,
    expectation        VARCHAR   NOT NULL,
    column_name        VARCHAR,             -- NULL for table-level checks
    description        VARCHAR   NOT NULL,
    severity           VARCHAR   NOT NULL,  -- blocking | warning
    success            BOOLEAN   NOT NULL,
    element_count      BIGINT    NOT NULL,  -- rows evaluated; 1 for aggregate checks
    unexpected_count   BIGINT    NOT NULL,
    unexpected_percent DOUBLE,              -- NULL when the check raised an error
    sample_unexpected  VARCHAR   NOT NULL,  -- JSON list, at most 5 values, PII masked
    observed_value     VARCHAR,             -- JSON, aggregate checks only
    owner              VARCHAR   NOT NULL,
    error              VARCHAR              -- exception message when the check could not run
)
"""


@dataclass(frozen=True)
class Result:
    """One row of ``quality.validation_results``; field order is the table's column order."""

    run_id: str
    validated_at: datetime
    as_of: datetime
    entity: str
    table_name: str
    dimension: str
    expectation: str
    column_name: str | None
    description: str
    severity: str
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float | None
    sample_unexpected: str
    observed_value: str | None
    owner: str
    error: str | None

    @property
    def blocking_failure(self) -> bool:
        return self.severity == "blocking" and not self.success


def validate_all(
    warehouse_path: Path,
    run_id: str,
    as_of: datetime | date | None = None,
    entities: list[str] | None = None,
) -> list[Result]:
    """Validate the marts of ``entities`` (default: every suite) and record the results.

    ``as_of`` is the reference time for timeliness checks: pass the as-of date of the data
    (a date means midnight UTC); naive datetimes are taken as UTC; default is now. Rows
    previously recorded for the same ``run_id`` and entity are replaced, so a retried run
    does not count twice. Returns one ``Result`` per check, in suite order.
    """
    suites = [get_suite(e) for e in (entities if entities is not None else list(SUITES))]
    reference = _naive_utc(as_of)
    validated_at = datetime.now(UTC).replace(tzinfo=None)
    frames = load_frames(warehouse_path, suites, reference)

    from expectations import gx_engine

    results: list[Result] = []
    for suite in suites:
        outcomes = gx_engine.evaluate(suite, frames[suite.entity])
        for check, outcome in zip(suite.checks, outcomes, strict=True):
            results.append(
                _result(run_id, validated_at, reference, suite, check, outcome)
            )
    write_results(warehouse_path, results)
    return results


def validate_entity(
    warehouse_path: Path,
    entity: str,
    run_id: str,
    as_of: datetime | date | None = None,
) -> list[Result]:
    """Validate one entity; see :func:`validate_all`."""
    return validate_all(warehouse_path, run_id, as_of=as_of, entities=[entity])


def blocking_failures(results: list[Result]) -> list[Result]:
    return [r for r in results if r.blocking_failure]


def load_frames(warehouse_path: Path, suites: list[Suite], as_of: datetime) -> dict[str, Any]:
    """Each suite's frame (pandas), read through one short-lived read-only connection."""
    frames = {}
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        for suite in suites:
            params = {"as_of": as_of} if "$as_of" in suite.sql else {}
            try:
                frames[suite.entity] = con.execute(suite.sql, params).df()
            except duckdb.CatalogException as exc:
                raise LookupError(
                    f"cannot load entity {suite.entity!r} from {suite.table} in "
                    f"{warehouse_path}: {exc}"
                ) from exc
    return frames


def write_results(warehouse_path: Path, results: list[Result]) -> None:
    if not results:
        return
    columns = [f.name for f in fields(Result)]
    insert = (
        f"INSERT INTO {RESULTS_TABLE} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    with duckdb.connect(str(warehouse_path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        con.execute(RESULTS_DDL)
        con.execute("BEGIN TRANSACTION")
        try:
            for run_id, entity in sorted({(r.run_id, r.entity) for r in results}):
                con.execute(
                    f"DELETE FROM {RESULTS_TABLE} WHERE run_id = ? AND entity = ?",
                    [run_id, entity],
                )
            con.executemany(insert, [list(astuple(r)) for r in results])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``; keeps the domain for triage."""
    local, at, domain = value.partition("@")
    return f"{local[:1]}***{at}{domain}"


def _result(
    run_id: str,
    validated_at: datetime,
    as_of: datetime,
    suite: Suite,
    check: Check,
    outcome: Any,
) -> Result:
    pii = bool(suite.pii_columns & set((check.column or "").split(", ")))
    observed = outcome.observed_value
    return Result(
        run_id=run_id,
        validated_at=validated_at,
        as_of=as_of,
        entity=suite.entity,
        table_name=suite.table,
        dimension=check.dimension,
        expectation=check.expectation,
        column_name=check.column,
        description=check.description,
        severity=check.severity,
        success=outcome.success,
        element_count=outcome.element_count,
        unexpected_count=outcome.unexpected_count,
        unexpected_percent=outcome.unexpected_percent,
        sample_unexpected=json.dumps(_sample(outcome.sample, pii)),
        observed_value=None if observed is None else json.dumps(_plain(observed)),
        owner=check.owner,
        error=outcome.error,
    )


def _sample(values: list[Any], pii: bool) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        value = _masked(_plain(value), pii)
        if value not in seen:
            seen.append(value)
        if len(seen) == SAMPLE_SIZE:
            break
    return seen


def _masked(value: Any, pii: bool) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, pii) for k, v in value.items()}
    if isinstance(value, str) and ("@" in value or pii):
        return mask_email(value)
    return value


def _plain(value: Any) -> Any:
    """JSON-friendly Python value from whatever pandas/numpy handed back."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or _is_missing(value):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _naive_utc(value: datetime | date | None) -> datetime:
    # DuckDB TIMESTAMP columns hold naive UTC; binding an aware value would make DuckDB
    # compare through the session time zone instead.
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if not isinstance(value, datetime):
        return datetime.combine(value, time())
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
