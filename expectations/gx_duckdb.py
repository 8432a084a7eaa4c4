"""Great Expectations on DuckDB, inside the database: the adapter GX 1.x needs.

GX 1.24 ships no DuckDB support. Through SQLAlchemy and duckdb-engine two things break:

1. Every expectation fails with `MetricResolutionError: list index out of range`. GX runs a
   query inside `with engine.connect()` and reads its rows after the block has closed the
   connection; only for a fixed list of dialects (sqlite, mssql, bigquery, databricks) does it
   keep one connection open. Closing a DuckDB connection discards its pending result, so
   every metric comes back empty (GX issues #10738 and #11579).
2. Regular expressions: GX maps `expect_column_values_to_match_regex` to nothing for DuckDB
   ("Regex is not supported for dialect duckdb"). DuckDB's `~` operator would be the obvious
   choice, but it matches the whole string; GX's pandas and Spark engines search.

The fix: a datasource type `duckdb` (`context.data_sources.add_duckdb(...)`) whose execution
engine runs every query on one connection held for the engine's life, and a regex mapping to
DuckDB's `regexp_matches` (a search). Everything else is stock GX: metrics are computed by
SQL that GX writes, so no table is ever pulled into Python.

Written against great-expectations 1.24.1 and refused with any other version: both fixes lean
on GX internals (`SqlAlchemyExecutionEngine.get_connection`, the regex helper's module-level
name). Before moving the pin, run `tests/unit/test_gx_duckdb.py`, which shows each failure without
the adapter and each expectation type we use working with it.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import sys
from collections.abc import Generator
from typing import Any, Literal

import great_expectations as gx

GX_VERSION = "1.24.1"

if gx.__version__ != GX_VERSION:
    raise ImportError(
        f"expectations.gx_duckdb was written for great-expectations {GX_VERSION}, found "
        f"{gx.__version__}: check it against tests/unit/test_gx_duckdb.py before changing the pin"
    )

# The internals below are what the pin protects: imported once the version is checked.
import sqlalchemy as sa  # noqa: E402
from great_expectations.datasource.fluent import SQLDatasource  # noqa: E402
from great_expectations.execution_engine import SqlAlchemyExecutionEngine  # noqa: E402
from great_expectations.expectations.metrics import util as metric_util  # noqa: E402
from great_expectations.expectations.metrics.column_map_metrics import (  # noqa: E402
    column_values_match_regex,
    column_values_match_regex_list,
    column_values_not_match_regex,
    column_values_not_match_regex_list,
)


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """Runs every query on one DuckDB connection, opened on first use and closed by `close()`."""

    @contextlib.contextmanager
    def get_connection(self) -> Generator[sa.Connection, None, None]:
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        yield self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.engine.dispose()


class DuckDBDatasource(SQLDatasource):
    """A SQL datasource on a DuckDB file (`duckdb:///path`), validated in the database."""

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment]

    @property
    def execution_engine_type(self) -> builtins.type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine

    def close(self) -> None:
        """Release the file: DuckDB allows one writing process, which may be waiting for it."""
        if self._execution_engine is not None:
            self._execution_engine.close()
        if self._engine is not None:
            self._engine.dispose()


_stock_regex_expression = metric_util.get_dialect_regex_expression


def _regex_expression(column: Any, regex: str, dialect: Any, positive: bool = True) -> Any:
    if getattr(dialect, "name", None) == "duckdb":
        match = sa.func.regexp_matches(column, sa.literal(regex))
        return match if positive else sa.not_(match)
    return _stock_regex_expression(column, regex, dialect, positive)


# The metric modules imported the helper by name: replace it where it is looked up.
for _module in (
    column_values_match_regex,
    column_values_not_match_regex,
    column_values_match_regex_list,
    column_values_not_match_regex_list,
):
    _module.get_dialect_regex_expression = _regex_expression


def _drop_duckdb_type_constants() -> None:
    # With GX and duckdb-engine both loaded, DuckDB's type constants (`duckdb.sqltypes.BIGINT`,
    # ...) are still referenced from module dictionaries when DuckDB's binding library shuts
    # down, and it prints dozens of "nanobind: leaked instance" lines at every exit. Nothing
    # leaks for real (the process is ending); dropping those references first keeps it quiet.
    for name, module in list(sys.modules.items()):
        if not name.startswith(("duckdb", "_duckdb")):
            continue
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            for name, value in list(namespace.items()):
                if type(value).__name__ == "DuckDBPyType":
                    namespace[name] = None


atexit.register(_drop_duckdb_type_constants)
