"""`spine sql`: ask the served warehouse, read-only.

Opens the warehouse file read-only with `serving` (what consumers read) as the schema names
resolve in, so `select * from customers` reads `serving.customers`; the other schemas stay
reachable by their names (`marts.usage_events`, `quality.validation_results`). DuckDB renders
the results. Nothing can be written: the file is opened read-only.
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

from orchestration.errors import first_line

PROMPT, MORE = "serving> ", "    ...> "


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
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


def show(con: duckdb.DuckDBPyConnection, sql: str, output: str, max_rows: int) -> None:
    """Run `sql` and print what it returns: a table (DuckDB's rendering, as wide as the
    terminal), CSV or JSON lines."""
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


def run_statements(
    con: duckdb.DuckDBPyConnection,
    text: str,
    output: str,
    max_rows: int,
    denied: Callable[[str, duckdb.Error], Exception | None] | None = None,
) -> bool:
    """Each `;`-separated statement of `text` in turn; False after the first that failed.
    `denied` turns an error into the access rule it amounts to (a role's connection)."""
    for statement in _statements(text):
        try:
            show(con, statement, output, max_rows)
        except duckdb.Error as exc:
            reason = denied(statement, exc) if denied else None
            click.echo(f"spine sql: {reason or exc}", err=True)
            return False
    return True


def connect_as_role(role: str) -> tuple[duckdb.DuckDBPyConnection, Callable[[str, duckdb.Error], Exception | None]]:
    """A role's read-only connection (its file of `data/access`), and what explains a denial."""
    from privacy.access import connect_as, explain  # noqa: PLC0415 (only `--role` needs the policy)
    from privacy.access_policy import UnknownRole  # noqa: PLC0415

    try:
        con = connect_as(role)
    except (UnknownRole, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    return con, lambda sql, error: explain(role, con, sql, error)


def prompt(warehouse: Path, output: str, max_rows: int) -> None:
    """A prompt that runs each statement once it ends with `;` (Ctrl-D or `.quit` to leave).
    The warehouse is opened for each statement only: a run can write it in between."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    click.echo("Ask the warehouse (read-only; tables of `serving` by their names). End a statement with ;")
    with connect(warehouse) as con:
        click.echo("Tables: " + ", ".join(name for (name,) in con.execute("show tables").fetchall()))
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


def _statements(text: str) -> list[str]:
    """The statements of a script; DuckDB's own parser splits them (a `;` inside a string stays)."""
    return [statement.query for statement in duckdb.extract_statements(text)]
