"""`spine sql`: ask the served warehouse, read-only.

Opens the warehouse file read-only with `serving` (what consumers read) as the schema names
resolve in, so `select * from customers` reads `serving.customers`; the other schemas stay
reachable by their names (`marts.usage_events`, `quality.validation_results`). DuckDB renders
the results. Nothing can be written: the file is opened read-only.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

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
    con.execute("set schema = 'serving'")
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
        click.echo(relation.df().to_json(orient="records", lines=True, date_format="iso").rstrip("\n"))
    else:
        width = shutil.get_terminal_size((160, 40)).columns
        relation.show(max_width=width, max_rows=max_rows)


def run_statements(con: duckdb.DuckDBPyConnection, text: str, output: str, max_rows: int) -> bool:
    """Each `;`-separated statement of `text` in turn; False after the first that failed."""
    for statement in _statements(text):
        try:
            show(con, statement, output, max_rows)
        except duckdb.Error as exc:
            click.echo(f"spine sql: {exc}", err=True)
            return False
    return True


def prompt(con: duckdb.DuckDBPyConnection, output: str, max_rows: int) -> None:
    """A prompt that runs each statement once it ends with `;` (Ctrl-D or `.quit` to leave)."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    click.echo("Ask the warehouse (read-only; tables of `serving` by their names). End a statement with ;")
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
            run_statements(con, "\n".join(buffer), output, max_rows)
            buffer = []


def _statements(text: str) -> list[str]:
    """The statements of a script; DuckDB's own parser splits them (a `;` inside a string stays)."""
    return [statement.query for statement in duckdb.extract_statements(text)]
