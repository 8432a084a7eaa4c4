"""The SQL the quality layer writes itself, where DuckDB and PostgreSQL spell it differently.

Most of it is written once, in SQL both take. What is not has one function per difference
here, chosen by the connection's dialect (`dialect_of`): a DuckDB connection, or
`data_spine.warehouse.PgConnection`, which says `postgres`. The suites' SQL names its one
difference (a regular-expression search) as `$regex_search`, bound by `sql_words`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import psycopg2.errors

from data_spine.warehouse import Warehouse

DUCKDB = "duckdb"
POSTGRES = "postgres"

# Whatever the warehouse raises, on either target.
WAREHOUSE_ERRORS: tuple[type[Exception], ...] = (duckdb.Error, psycopg2.Error)
# A table (or its schema) that is not there yet.
MISSING_TABLE: tuple[type[Exception], ...] = (duckdb.CatalogException, psycopg2.errors.UndefinedTable)


def warehouse_of(warehouse: Warehouse | Path | str) -> Warehouse:
    """The warehouse a caller named: a `Warehouse`, or the path of a DuckDB file."""
    if isinstance(warehouse, Warehouse):
        return warehouse
    return Warehouse("duckdb", Path(warehouse), "")


def dialect_of(con: Any) -> str:
    return getattr(con, "dialect", DUCKDB)


def sql_words(dialect: str) -> dict[str, str]:
    """What the suites' SQL writes as `$<word>`, in the dialect's spelling. Both search (a match
    anywhere in the value), as Great Expectations' regex expectations do: DuckDB's
    `regexp_matches`, PostgreSQL's `regexp_like` (PostgreSQL's own `regexp_matches` returns
    the matches as rows)."""
    return {"regex_search": "regexp_like" if dialect == POSTGRES else "regexp_matches"}


def timestamp_type(con: Any) -> str:
    """How `information_schema.columns.data_type` names a TIMESTAMP column."""
    return "timestamp without time zone" if dialect_of(con) == POSTGRES else "TIMESTAMP"


def row_hash_sum(con: Any, row: str, columns: Sequence[str] = ()) -> str:
    """SQL for the sum of a hash of every row (of `columns`, or the whole row `row`): the same
    rows give the same sum, in any order. DuckDB hashes natively (64 bits); PostgreSQL's
    `hashtext` has 32, so its rows are hashed by md5, of which 64 bits are summed."""
    if dialect_of(con) == POSTGRES:
        value = f"ROW({', '.join(columns)})" if columns else row
        return f"sum(('x' || left(md5(({value})::text), 16))::bit(64)::bigint::numeric)"
    hashed = f"hash({', '.join(columns)})" if columns else f"hash({row})"
    return f"sum({hashed}::HUGEINT)"


def rows_inserted(con: Any, insert: str, parameters: Sequence[Any]) -> int:
    """Run an INSERT and say how many rows it wrote (DuckDB returns the count as a row)."""
    cursor = con.execute(insert, list(parameters))
    if dialect_of(con) == POSTGRES:
        return cursor.rowcount
    (count,) = cursor.fetchone()
    return count


def replace_table(con: Any, target: str, source: str, same_shape: bool) -> None:
    """Make `target` a copy of `source`, inside the caller's transaction. On PostgreSQL a table
    of the same columns is emptied and refilled rather than dropped: the role views over
    `serving` (privacy) and its grants depend on the table itself there, not on its name."""
    if dialect_of(con) != POSTGRES:
        con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {source}")
        return
    if same_shape:
        con.execute(f"DELETE FROM {target}")
        con.execute(f"INSERT INTO {target} SELECT * FROM {source}")
        return
    # Its columns changed: the views over it are made again by the access step.
    con.execute(f"DROP TABLE IF EXISTS {target} CASCADE")
    con.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}")


def begin_snapshot(con: Any) -> None:
    """Begin a transaction whose reads all see one state of the warehouse. DuckDB's
    transactions do; PostgreSQL's default (read committed) sees each statement's own."""
    con.begin()
    if dialect_of(con) == POSTGRES:
        con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


@contextlib.contextmanager
def one_at_a_time(con: Any, what: str) -> Iterator[None]:
    """Writers of `what` take turns. DuckDB has one writer process; PostgreSQL takes writers
    at once: two creating the same table (`CREATE ... IF NOT EXISTS`) can both find it missing
    and one fail, two publishing the same entity would interleave. A lock of the database's,
    named by `what`, held by the session until the block ends (outside any transaction: a
    snapshot taken before the wait would not see what the other writer committed)."""
    if dialect_of(con) != POSTGRES:
        yield
        return
    con.execute("SELECT pg_advisory_lock(hashtext(?))", [f"data_spine {what}"])
    try:
        yield
    finally:
        con.execute("SELECT pg_advisory_unlock(hashtext(?))", [f"data_spine {what}"])


def schema_changes(con: Any) -> contextlib.AbstractContextManager[None]:
    """Around the quality layer's `CREATE ... IF NOT EXISTS` and `ADD COLUMN IF NOT EXISTS`."""
    return one_at_a_time(con, "quality schema")


def temp_table(dialect: str, name: str, query: str) -> tuple[list[str], str]:
    """The statements that compute `query` into a temporary table `name` of the connection,
    and how to read it back."""
    if dialect == POSTGRES:
        return [f"DROP TABLE IF EXISTS pg_temp.{name}", f"CREATE TEMP TABLE {name} AS {query}"], f"pg_temp.{name}"
    return [f"CREATE OR REPLACE TEMP TABLE {name} AS {query}"], f"temp.{name}"
