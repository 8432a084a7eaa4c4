"""Evaluate batches with Great Expectations, inside the warehouse.

Each batch becomes a GX query asset and its checks one GX expectation suite; GX computes every
metric with SQL in the warehouse, so memory stays flat however large the table. On DuckDB the
datasource is the read-only one of `gx_duckdb` (GX ships none), released before this returns so
that a writer can have the file straight after; on PostgreSQL it is GX's own `postgres`
datasource, on the warehouse's SQLAlchemy URL, with GX's own regex mapping (`~`, a search).
"""

from __future__ import annotations

import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from data_spine.warehouse import Warehouse
from expectations.dialects import sql_words, temp_table, warehouse_of
from expectations.suite import Batch, Check

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
    # Failing records: the batch's key columns and the checked value, or the values alone.
    sample: list[Any] = field(default_factory=list)
    observed_value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """What validating some batches found: each batch's outcomes, in check order, and Great
    Expectations' own validation result of it (an `ExpectationSuiteValidationResult`), which
    its Data Docs render (`gx_data_docs`)."""

    outcomes: dict[str, list[Outcome]]
    validations: dict[str, Any]


@dataclass(frozen=True)
class DuckDBSettings:
    """How the validating connection may use the machine (DuckDB settings; PostgreSQL's are
    the server's)."""

    # DuckDB takes 80% of the machine by default and spills to disk past its limit. A
    # validation of 10M events peaks at 1.6 GB unbounded and 1.3 GB with this, a second slower.
    memory_limit: str | None = "1GB"
    threads: int | None = None

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in (("memory_limit", self.memory_limit), ("threads", self.threads)) if v}


def render_sql(sql: str, as_of: datetime, written_last: str = "true", dialect: str = "duckdb") -> str:
    """The batch's SQL with `$as_of` bound to a TIMESTAMP literal (naive UTC), `$written_last`
    to its condition (`Batch.written_last`) and the dialect's words (`dialects.sql_words`), as
    one SELECT (GX query assets must start with one; a query with a WITH clause is wrapped)."""
    sql = string.Template(sql).safe_substitute(
        as_of=f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S.%f}'", written_last=written_last, **sql_words(dialect)
    )
    sql = sql.strip()
    if sql[:7].lower() == "select\n" or sql[:7].lower() == "select ":
        return sql
    return f"select * from ({sql}) as batch"  # PostgreSQL names every subquery


def import_in_background() -> threading.Thread:
    """Start importing Great Expectations (seconds of CPU) on a thread of its own, for a process
    that will validate after a wait it spends idle: the pipeline, while dbt builds. A validation
    that starts before the import is done waits for it (Python's import lock)."""
    thread = threading.Thread(target=_import_great_expectations, name="import great_expectations", daemon=True)
    thread.start()
    return thread


def _import_great_expectations() -> None:
    from expectations import gx_duckdb  # noqa: F401, PLC0415  (imports Great Expectations)


def evaluate(
    warehouse: Warehouse | Path,
    batches: Sequence[Batch],
    as_of: datetime,
    settings: DuckDBSettings = DuckDBSettings(),
    whole_history: bool = True,
) -> dict[str, list[Outcome]]:
    """Outcomes per batch name, in check order. Without `whole_history`, a batch over an
    incremental mart checks only the rows the mart's latest build wrote."""
    return evaluate_batches(warehouse, batches, as_of, settings, whole_history).outcomes


def evaluate_batches(
    warehouse: Warehouse | Path,
    batches: Sequence[Batch],
    as_of: datetime,
    settings: DuckDBSettings = DuckDBSettings(),
    whole_history: bool = True,
) -> Evaluation:
    """`evaluate`, with Great Expectations' validation result of each batch beside its outcomes."""
    # Great Expectations takes seconds to import; only a validation needs it (see __init__).
    import sqlalchemy as sa  # noqa: PLC0415  (imported with Great Expectations)

    from expectations import gx_duckdb  # noqa: F401, PLC0415  (registers the `duckdb` datasource type)

    target = warehouse_of(warehouse)
    if target.is_postgres:
        # A server that refuses us raises here, for the orchestrator to report; inside GX it
        # would be recorded as every check failing.
        target.connect(read_only=True).close()
        datasource = ephemeral_context().data_sources.add_postgres(
            name="warehouse",
            connection_string=target.sqlalchemy_url(),
            kwargs={
                # The marts' timestamps are naive UTC, as the DuckDB path reads them.
                "connect_args": {"application_name": "data_spine audit", "options": "-c timezone=UTC"},
                # One connection for every query GX makes: a batch's temporary table
                # (`_materialized`) lives on it. Not a read-only session, which PostgreSQL
                # would refuse that table; readers do not hold writers back there.
                "poolclass": sa.pool.StaticPool,
            },
        )
    else:
        path = target.duckdb_path.resolve()
        # A file locked by another process raises DuckDB's own error here, which the
        # orchestrator retries; inside GX it would be recorded as every check failing.
        duckdb.connect(str(path), read_only=True).close()
        datasource = ephemeral_context().data_sources.add_duckdb(
            name="warehouse",
            connection_string=f"duckdb:///{path}",
            kwargs={
                "connect_args": {"read_only": True, "config": settings.config()},
                # One DuckDB connection for every query GX makes, its reflection of a batch's
                # columns included: a batch's temporary table (`_materialized`) lives on it.
                "poolclass": sa.pool.StaticPool,
            },
        )
    try:
        outcomes, validations = {}, {}
        for index, batch in enumerate(batches):
            query = render_sql(batch.sql, as_of, batch.written_last(whole_history), target.dialect)
            if batch.materialize and not (batch.incremental and whole_history):
                query = _materialized(datasource, f"spine_batch_{index}", query, target.dialect)
            gx_batch = (
                datasource.add_query_asset(name=batch.name, query=query)
                .add_batch_definition_whole_table("whole_table")
                .get_batch()
            )
            suite = gx_suite(batch.name, batch.checks)
            result_format: dict[str, Any] = {
                "result_format": "SUMMARY",
                "partial_unexpected_count": PARTIAL_UNEXPECTED,
            }
            if batch.key:
                result_format["unexpected_index_column_names"] = list(batch.key)
            validation = gx_batch.validate(suite, result_format=result_format)
            by_index = {check_index(r): r for r in validation.results}
            outcomes[batch.name] = [_outcome(by_index[i]) for i in range(len(batch.checks))]
            validations[batch.name] = validation
        return Evaluation(outcomes, validations)
    finally:
        _close(datasource)


def _close(datasource: Any) -> None:
    """Release the datasource's connections (GX's own datasources have no `close`)."""
    if datasource.type == "duckdb":
        datasource.close()
        return
    datasource.get_execution_engine().engine.dispose()
    datasource.get_engine().dispose()


def _materialized(datasource: Any, name: str, query: str, dialect: str = "duckdb") -> str:
    """The batch's rows computed once, into a temporary table of the validating connection
    (DuckDB allows them on a read-only file), and the query that reads them back.

    Great Expectations runs one query per metric, each over the batch's SQL: a batch whose
    SQL joins or correlates (invoices against their charges and customers) was computed
    again for each of its thirty-odd metrics. Left where they lie: a batch that says so
    (`Batch.materialize`, a plain read of a large table) and an event history audited whole
    (a full refresh, the Sunday run), whose copy would take the memory its size decides."""
    import sqlalchemy as sa  # noqa: PLC0415  (imported with Great Expectations)

    statements, copy = temp_table(dialect, name, query)
    # The datasource's engine has one connection for its life (gx_duckdb on DuckDB, a static
    # pool on PostgreSQL): the queries GX runs for the batch see this connection's temporary tables.
    with datasource.get_execution_engine().get_connection() as connection:
        try:
            for statement in statements:
                connection.execute(sa.text(statement))
        except sa.exc.SQLAlchemyError:
            # A batch whose SQL fails (a mart missing, a column renamed) is read where it lies:
            # each of its checks then records the error, as without the copy.
            connection.rollback()
            return query
        # Committed: GX rolls the connection back now and then, which would drop it.
        connection.commit()
    return f"select * from {copy}"


def ephemeral_context() -> Any:
    """A Great Expectations context held in memory, without telemetry or progress bars."""
    # Great Expectations is imported when a validation runs (import cost, see `evaluate`).
    import great_expectations as gx  # noqa: PLC0415
    from great_expectations.data_context.types.base import (  # noqa: PLC0415
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In memory: nothing persists between runs, and no telemetry leaves a machine that may hold
    # customer data.
    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def gx_suite(name: str, checks: Sequence[Check]) -> Any:
    """The checks as a Great Expectations expectation suite, each expectation carrying its
    check's name, dimension, severity and owner (and its place in `checks`) in its meta."""
    import great_expectations as gx  # noqa: PLC0415  (import cost, see `evaluate`)

    return gx.ExpectationSuite(name=name, expectations=[_expectation(i, c) for i, c in enumerate(checks)])


def check_index(result: Any) -> int:
    """The place, among the checks of its suite (`gx_suite`), of the check an expectation
    result is for: GX does not keep the suite's order in its results."""
    return result.expectation_config.meta[_INDEX_KEY]


def _expectation(index: int, check: Check) -> Any:
    # Great Expectations is imported when a validation runs (import cost, see `evaluate`).
    from great_expectations.expectations.expectation_configuration import (  # noqa: PLC0415
        ExpectationConfiguration,
    )

    return ExpectationConfiguration(
        type=check.expectation,
        kwargs=dict(check.kwargs),
        meta={
            _INDEX_KEY: index,
            "name": check.name,
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
            bool(result.success),
            1,
            failed,
            100.0 * failed,
            observed_value=details.get("observed_value"),
        )
    # GX skips nulls except in null checks; count only the rows it actually judged. A batch
    # with no rows at all (a source that sent nothing yet) has counts of None: nothing judged.
    evaluated = int(details.get("element_count") or 0) - int(details.get("missing_count") or 0)
    unexpected = int(details.get("unexpected_count") or 0)
    return Outcome(
        success=bool(result.success),
        element_count=evaluated,
        unexpected_count=unexpected,
        unexpected_percent=100.0 * unexpected / evaluated if evaluated else 0.0,
        sample=list(details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list") or []),
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
