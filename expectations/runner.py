"""Validate entities in the warehouse and record every check's outcome in
``quality.validation_results``.

DuckDB allows one writing process, and ingestion, dbt and publishing all write the same file.
So a validation first evaluates every check through a read-only connection (Great
Expectations computes the metrics in the warehouse), releases it, and then opens the warehouse
for writing once, briefly, to append the results. PostgreSQL takes the same steps. Given a
reports folder, it then keeps Great Expectations' validation results there and renders their
Data Docs pages (`gx_data_docs`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from data_spine.warehouse import Warehouse
from expectations.dialects import (
    MISSING_TABLE,
    row_hash_sum,
    schema_changes,
    timestamp_type,
    warehouse_of,
)
from expectations.escaping import sample_text
from expectations.gx_data_docs import update_data_docs
from expectations.gx_engine import DuckDBSettings, Outcome, evaluate_batches
from expectations.masking import mask
from expectations.suite import Batch, Check, Suite
from expectations.suites import SUITES, get_suite

RESULTS_TABLE = "quality.validation_results"
AUDITS_TABLE = "quality.audits"
SAMPLE_SIZE = 5
AUDITS_DDL = f"""
CREATE TABLE IF NOT EXISTS {AUDITS_TABLE} (
    run_id       VARCHAR   NOT NULL,
    entity       VARCHAR   NOT NULL,
    audited_at   TIMESTAMP NOT NULL,  -- UTC
    fingerprints VARCHAR   NOT NULL   -- JSON {{table: "rows:content hash"}} of the marts audited
)
"""

# (column, type, constraint); the table is created with every column, and a warehouse made by
# an older release gains the columns it lacks (new columns may be null in old rows).
_COLUMNS = (
    ("run_id", "VARCHAR", "NOT NULL"),
    ("validated_at", "TIMESTAMP", "NOT NULL"),  # UTC
    ("as_of", "TIMESTAMP", "NOT NULL"),  # UTC reference time for timeliness
    ("entity", "VARCHAR", "NOT NULL"),
    ("table_name", "VARCHAR", "NOT NULL"),  # the batch: a mart or a source model
    ("dimension", "VARCHAR", "NOT NULL"),
    ("expectation", "VARCHAR", "NOT NULL"),
    ("column_name", "VARCHAR", ""),  # NULL for table-level checks
    ("description", "VARCHAR", "NOT NULL"),
    ("severity", "VARCHAR", "NOT NULL"),  # blocking | warning
    ("success", "BOOLEAN", "NOT NULL"),
    ("element_count", "BIGINT", "NOT NULL"),  # rows evaluated; 1 for aggregate checks
    ("unexpected_count", "BIGINT", "NOT NULL"),
    ("unexpected_percent", "DOUBLE PRECISION", ""),  # NULL when the check raised an error
    ("sample_unexpected", "VARCHAR", "NOT NULL"),  # JSON list, at most 5, PII masked
    ("observed_value", "VARCHAR", ""),  # JSON, aggregate checks only
    ("owner", "VARCHAR", "NOT NULL"),
    ("error", "VARCHAR", ""),  # exception message when the check could not run
    ("check_name", "VARCHAR", ""),  # the check's stable name within its entity
    ("expectation_kwargs", "VARCHAR", ""),  # JSON arguments of the expectation
    ("rows_checked", "VARCHAR", ""),  # ALL_ROWS | WRITTEN_LAST (NULL in rows of older releases: all)
)

# Which rows of its batch a check looked at (`rows_checked`).
ALL_ROWS = "all"
WRITTEN_LAST = "written last"
RESULTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {RESULTS_TABLE} (\n    "
    + ",\n    ".join(f"{name} {kind} {constraint}".rstrip() for name, kind, constraint in _COLUMNS)
    + "\n)"
)


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
    check_name: str
    expectation_kwargs: str
    rows_checked: str = ALL_ROWS


def validate_all(
    warehouse_path: Warehouse | Path,
    run_id: str,
    as_of: datetime | date | None = None,
    entities: list[str] | None = None,
    settings: DuckDBSettings = DuckDBSettings(),
    whole_history: bool = True,
    reports_dir: Path | None = None,
) -> list[Result]:
    """Validate ``entities`` (default: every suite) and record the results.

    ``as_of`` is the reference time for timeliness checks: pass the as-of date of the data
    (a date means midnight UTC); naive datetimes are taken as UTC; default is now. Without
    ``whole_history`` the row-level checks of an incremental event-grain mart look at the rows
    its latest build wrote (an audit of what changed; see `Batch.incremental`). Rows
    previously recorded for the same ``run_id`` and entity are replaced, so a retried run
    does not count twice. With ``reports_dir``, Great Expectations' own validation result of
    each batch is kept there and its Data Docs updated (`gx_data_docs`). Returns one ``Result``
    per check, in suite order.
    """
    warehouse = warehouse_of(warehouse_path)
    suites = [get_suite(e) for e in (entities if entities is not None else list(SUITES))]
    reference = _naive_utc(as_of)
    validated_at = datetime.now(UTC).replace(tzinfo=None)
    results: list[Result] = []
    audited: dict[str, dict[str, str | None]] = {}
    validations: dict[str, dict[str, Any]] = {}
    for suite in suites:
        evaluation = evaluate_batches(warehouse, suite.batches, reference, settings, whole_history)
        validations[suite.entity] = evaluation.validations
        with warehouse.connect(read_only=True) as con:
            audited[suite.entity] = fingerprints(con, suite)
        for batch in suite.batches:
            for check, outcome in zip(batch.checks, evaluation.outcomes[batch.name], strict=True):
                rows = WRITTEN_LAST if batch.sliced(whole_history) else ALL_ROWS
                results.append(_result(run_id, validated_at, reference, suite.entity, batch, check, outcome, rows))
    write_results(warehouse, results, {(run_id, e): f for e, f in audited.items()})
    if reports_dir is not None:
        # After the results are stored: the pages are a view of the audit, never a reason to lose it.
        for suite in suites:
            try:
                update_data_docs(reports_dir, suite, run_id, validated_at, validations[suite.entity])
            except Exception as exc:  # noqa: BLE001 - whatever GX's renderer or the disk raised
                warnings.warn(f"{suite.entity}: audit stored, its Data Docs pages not written: {exc}", stacklevel=2)
    return results


def validate_entity(
    warehouse_path: Warehouse | Path,
    entity: str,
    run_id: str,
    as_of: datetime | date | None = None,
    settings: DuckDBSettings = DuckDBSettings(),
    whole_history: bool = True,
    reports_dir: Path | None = None,
) -> list[Result]:
    """Validate one entity; see :func:`validate_all`."""
    return validate_all(
        warehouse_path,
        run_id,
        as_of=as_of,
        entities=[entity],
        settings=settings,
        whole_history=whole_history,
        reports_dir=reports_dir,
    )


def fingerprints(con: Any, suite: Suite) -> dict[str, str | None]:
    """What each of the entity's marts held (`table_fingerprint`): publishing compares it with
    what was audited, so a mart rebuilt in between (by another run) is never published unaudited."""
    # Asked rather than tried: a failed statement would end a PostgreSQL transaction.
    present = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'"
        ).fetchall()
    }
    prints: dict[str, str | None] = {}
    for table in suite.publishes:
        try:
            prints[table] = table_fingerprint(con, f"marts.{table}", suite.key_of(table)) if table in present else None
        except MISSING_TABLE:
            prints[table] = None
    return prints


REFRESHED_AT = "refreshed_at"


def table_fingerprint(con: Any, qualified_table: str, key: tuple[str, ...] = ()) -> str:
    """`rows:hash of every row` of one table (its columns in their order; the hash is the
    dialect's, `dialects.row_hash_sum`, so the two targets' fingerprints differ).

    Given its key, a table whose rows carry `refreshed_at` (an incremental event-grain mart, or
    its copy in serving) is hashed on the key and `refreshed_at` alone: dbt writes a row only
    with its invocation's `refreshed_at`, and publishing copies rows as they are, so those
    pairs tell the table's versions apart, at a fifth of the cost of hashing every column
    (10M events: 0.2 s instead of 1 s, and a publication takes three)."""
    schema, _, table = qualified_table.partition(".")
    if (
        key
        and con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "AND column_name = ? AND data_type = ?",
            [schema, table, REFRESHED_AT, timestamp_type(con)],
        ).fetchone()[0]
    ):
        hashed = row_hash_sum(con, "t", (*key, REFRESHED_AT))
    else:
        hashed = row_hash_sum(con, "t")
    rows, digest = con.execute(f"SELECT count(*), {hashed} FROM {qualified_table} AS t").fetchone()
    return f"{rows}:{digest or 0}"


def ensure_results_table(con: Any) -> None:
    with schema_changes(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        con.execute(RESULTS_DDL)
        con.execute(AUDITS_DDL)
        for name, kind, _ in _COLUMNS:
            con.execute(f"ALTER TABLE {RESULTS_TABLE} ADD COLUMN IF NOT EXISTS {name} {kind}")


def write_results(
    warehouse_path: Warehouse | Path,
    results: list[Result],
    audited: dict[tuple[str, str], dict[str, str | None]] | None = None,
) -> None:
    """Store the results and, per (run, entity), the fingerprints of the marts audited."""
    if not results:
        return
    columns = [f.name for f in fields(Result)]
    insert = f"INSERT INTO {RESULTS_TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    with warehouse_of(warehouse_path).connect() as con:
        ensure_results_table(con)
        con.begin()
        try:
            for run_id, entity in sorted({(r.run_id, r.entity) for r in results}):
                con.execute(
                    f"DELETE FROM {RESULTS_TABLE} WHERE run_id = ? AND entity = ?",
                    [run_id, entity],
                )
            con.executemany(insert, [list(astuple(r)) for r in results])
            for (run_id, entity), prints in (audited or {}).items():
                con.execute(f"DELETE FROM {AUDITS_TABLE} WHERE run_id = ? AND entity = ?", [run_id, entity])
                con.execute(
                    f"INSERT INTO {AUDITS_TABLE} VALUES (?, ?, ?, ?)",
                    [run_id, entity, results[0].validated_at, json.dumps(prints)],
                )
            con.commit()
        except BaseException:
            con.rollback()
            raise


def failing_since(con: Any, results: list[Any]) -> dict[tuple[str, str], datetime]:
    """(entity, check) -> when the check's current run of failures began, for the failed
    ones among `results` (`Result`s or result rows as dicts)."""
    rows = [
        r if isinstance(r, dict) else {"entity": r.entity, "check_name": r.check_name, "success": r.success}
        for r in results
    ]
    failing = [(r["entity"], r["check_name"]) for r in rows if not r["success"] and r["check_name"]]
    if not failing:
        return {}
    found = con.execute(
        f"""
        WITH wanted (entity, check_name) AS (VALUES {", ".join("(?, ?)" for _ in failing)}),
        h AS (
            SELECT entity, check_name, validated_at, success FROM {RESULTS_TABLE}
            WHERE (entity, check_name) IN (SELECT entity, check_name FROM wanted)
        ),
        last_pass AS (
            SELECT entity, check_name, max(validated_at) AS at FROM h WHERE success GROUP BY entity, check_name
        )
        SELECT h.entity, h.check_name, min(h.validated_at)
        FROM h LEFT JOIN last_pass USING (entity, check_name)
        WHERE NOT h.success AND (last_pass.at IS NULL OR h.validated_at > last_pass.at)
        GROUP BY h.entity, h.check_name
    """,
        [value for pair in failing for value in pair],
    ).fetchall()
    return {(e, c): at for e, c, at in found}


def _result(
    run_id: str,
    validated_at: datetime,
    as_of: datetime,
    entity: str,
    batch: Batch,
    check: Check,
    outcome: Outcome,
    rows_checked: str = ALL_ROWS,
) -> Result:
    pii = batch.pii & set((check.column or "").split(", "))
    observed = outcome.observed_value
    return Result(
        run_id=run_id,
        validated_at=validated_at,
        as_of=as_of,
        entity=entity,
        table_name=batch.name,
        dimension=check.dimension,
        expectation=check.expectation,
        column_name=check.column,
        description=check.description,
        severity=check.severity,
        success=outcome.success,
        element_count=outcome.element_count,
        unexpected_count=outcome.unexpected_count,
        unexpected_percent=outcome.unexpected_percent,
        sample_unexpected=json.dumps(_sample(outcome.sample, batch.pii, bool(pii))),
        observed_value=None if observed is None else json.dumps(_plain(observed)),
        owner=check.owner,
        error=outcome.error,
        check_name=check.name,
        expectation_kwargs=json.dumps(_plain(dict(check.kwargs))),
        rows_checked=rows_checked,
    )


def _sample(values: list[Any], pii_columns: frozenset[str], value_is_pii: bool) -> list[Any]:
    """Up to SAMPLE_SIZE distinct failing records (or values), personal data masked."""
    seen: list[Any] = []
    for value in values:
        value = _plain(value)
        if isinstance(value, dict):
            value = {k: _shown(mask(v) if k in pii_columns else v) for k, v in value.items()}
        else:
            value = _shown(mask(value) if value_is_pii else value)
        if value not in seen:
            seen.append(value)
        if len(seen) == SAMPLE_SIZE:
            break
    return seen


def _shown(value: Any) -> Any:
    # Samples go into every report and alert: a 1 MB name or a NUL byte must not.
    return sample_text(value) if isinstance(value, str) else value


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
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _is_missing(value: Any) -> bool:
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
