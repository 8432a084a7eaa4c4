"""`spine sql`: ask the served warehouse, read-only.

Opens the warehouse file read-only with `serving` (what consumers read) as the schema names
resolve in, so `select * from customers` reads `serving.customers`; the other schemas stay
reachable by their names (`marts.usage_events`, `quality.validation_results`). DuckDB renders
the results. Nothing can be written: the file is opened read-only.

On PostgreSQL (SPINE_WAREHOUSE_TARGET=postgres) the same, in a read-only session of the
database; `--role` acts as the role's database role, so PostgreSQL itself refuses what the
policy does not grant, and the refusal is told with the policy's rule.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import duckdb
import pandas as pd
import psycopg2
import pyarrow as pa
import sqlparse

from data_spine.settings import settings
from data_spine.warehouse import PgConnection, Warehouse
from orchestration.errors import first_line

PROMPT, MORE = "serving> ", "    ...> "
DatabaseError = (duckdb.Error, psycopg2.Error)


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection | PgConnection:
    target = Warehouse.of(settings())
    if target.is_postgres:
        return _connect_pg(target)
    if not warehouse.exists():
        raise click.ClickException(f"no warehouse at {warehouse} yet: run `spine run` first")
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        raise click.ClickException(f"cannot open {warehouse} read-only: {first_line(str(exc))}") from None
    try:
        con.execute("set schema = 'serving'")
    except duckdb.CatalogException:
        con.close()
        raise click.ClickException(f"nothing is served in {warehouse} yet: run `spine run` first") from None
    return con


def _connect_pg(target: Warehouse) -> PgConnection:
    database = target.pg_parts()["dbname"]
    try:
        con = target.connect(read_only=True)
    except psycopg2.Error as exc:
        raise click.ClickException(f"cannot open database {database}: {first_line(str(exc))}") from None
    if con.execute("select 1 from pg_namespace where nspname = 'serving'").fetchone() is None:
        con.close()
        raise click.ClickException(f"nothing is served in database {database} yet: run `spine run` first")
    con.execute("set search_path = serving")
    return con


def show(con: duckdb.DuckDBPyConnection | PgConnection, sql: str, output: str, max_rows: int) -> None:
    """Run `sql` and print what it returns: a table (DuckDB's rendering, as wide as the
    terminal), CSV or JSON lines."""
    if isinstance(con, PgConnection):
        _show_pg(con, sql, output, max_rows)
        return
    relation = con.sql(sql)
    if relation is None:  # a statement that returns nothing (SET, PRAGMA, ...)
        return
    if output == "csv":
        relation.df().to_csv(sys.stdout, index=False)
    elif output == "json":
        columns = relation.columns
        for row in relation.fetchall():
            click.echo(json.dumps(dict(zip(columns, row, strict=True)), default=_json_value))
    else:
        width = shutil.get_terminal_size((160, 40)).columns
        relation.show(max_width=width, max_rows=max_rows)


def _show_pg(con: PgConnection, sql: str, output: str, max_rows: int) -> None:
    cursor = con.execute(sql)
    if cursor.description is None:  # a statement that returns nothing (SET, ...)
        return
    columns, rows = cursor.columns(), cursor.fetchall()
    if output == "csv":
        pd.DataFrame(rows, columns=columns).to_csv(sys.stdout, index=False)
    elif output == "json":
        for row in rows:
            click.echo(json.dumps(dict(zip(columns, row, strict=True)), default=_json_value))
    else:
        # DuckDB draws the table, as it does for the DuckDB warehouse.
        width = shutil.get_terminal_size((160, 40)).columns
        duckdb.connect().from_arrow(_arrow(columns, rows)).show(max_width=width, max_rows=max_rows)


def _arrow(columns: list[str], rows: list[tuple]) -> pa.Table:
    arrays = []
    for i in range(len(columns)):
        values = [row[i] for row in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # values of mixed shapes (jsonb): shown as text
            arrays.append(pa.array([None if v is None else json.dumps(v, default=_json_value) for v in values]))
    return pa.Table.from_arrays(arrays, names=columns)


def run_statements(
    con: duckdb.DuckDBPyConnection | PgConnection,
    text: str,
    output: str,
    max_rows: int,
    denied: Callable[[str, Exception], Exception | None] | None = None,
) -> bool:
    """Each `;`-separated statement of `text` in turn; False after the first that failed.
    `denied` turns an error into the access rule it amounts to (a role's connection)."""
    for statement in _statements(text, postgres=isinstance(con, PgConnection)):
        try:
            show(con, statement, output, max_rows)
        except DatabaseError as exc:
            reason = denied(statement, exc) if denied else None
            click.echo(f"spine sql: {_told(reason, exc)}", err=True)
            return False
    return True


def _told(reason: Exception | None, exc: Exception) -> str:
    """The error as said: the access rule it amounts to (with PostgreSQL's own words, which
    name the privilege it checked), or the database's message."""
    if isinstance(exc, psycopg2.Error):
        said = first_line(str(exc).strip())
        return f"{reason} [PostgreSQL: {said}]" if reason else said
    return str(reason or exc)


def connect_as_role(
    role: str,
) -> tuple[duckdb.DuckDBPyConnection | PgConnection, Callable[[str, Exception], Exception | None]]:
    """A role's read-only connection (its file of `data/access`, or on PostgreSQL a session as
    its database role), and what explains a denial."""
    from privacy.access import connect_as, explain  # noqa: PLC0415 (only `--role` needs the policy)
    from privacy.access_policy import UnknownRole  # noqa: PLC0415

    try:
        con = connect_as(role)
    except (UnknownRole, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except psycopg2.Error as exc:
        raise click.ClickException(f"cannot read as role {role!r}: {first_line(str(exc).strip())}") from None
    return con, lambda sql, error: explain(role, con, sql, error)


def _tables(con: duckdb.DuckDBPyConnection | PgConnection) -> list[str]:
    if isinstance(con, PgConnection):
        sql = "select table_name from information_schema.tables where table_schema = 'serving' order by 1"
    else:
        sql = "show tables"
    return [name for (name,) in con.execute(sql).fetchall()]


def prompt(warehouse: Path, output: str, max_rows: int) -> None:
    """A prompt that runs each statement once it ends with `;` (Ctrl-D or `.quit` to leave).
    The warehouse is opened for each statement only: a run can write it in between."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    click.echo("Ask the warehouse (read-only; tables of `serving` by their names). End a statement with ;")
    with connect(warehouse) as con:
        click.echo("Tables: " + ", ".join(_tables(con)))
    buffer: list[str] = []
    while True:
        try:
            line = input(MORE if buffer else PROMPT)
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return
        if not buffer and line.strip() in (".quit", ".exit", "quit", "exit"):
            return
        buffer.append(line)
        if line.rstrip().endswith(";"):
            try:
                with connect(warehouse) as con:
                    run_statements(con, "\n".join(buffer), output, max_rows)
            except click.ClickException as exc:  # the file is held by a run: say so, keep the prompt
                click.echo(f"spine sql: {exc.format_message()}", err=True)
            buffer = []


def _json_value(value: Any) -> Any:
    """A value JSON has no type for: numbers stay numbers, days and instants ISO 8601 text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return str(value)


def _statements(text: str, postgres: bool = False) -> list[str]:
    """The statements of a script; DuckDB's own parser splits them (a `;` inside a string stays).
    PostgreSQL's SQL is split without parsing it as DuckDB's (`::regclass`, `$$` bodies)."""
    if postgres:
        return [s for s in (part.strip().rstrip(";").strip() for part in sqlparse.split(text)) if s]
    return [statement.query for statement in duckdb.extract_statements(text)]
