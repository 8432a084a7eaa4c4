"""`spine warehouse ...`: which warehouse the spine writes to, and moving a DuckDB warehouse's
history onto PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from data_spine.settings import settings
from data_spine.warehouse import Warehouse


@click.group()
def warehouse() -> None:
    """The warehouse target (SPINE_WAREHOUSE_TARGET: duckdb, the default, or postgres at
    SPINE_POSTGRES_URL) and moving history between them."""


@warehouse.command()
def show() -> None:
    """Print the configured target and where it is."""
    target = Warehouse.of(settings())
    click.echo(f"{target.target}: {target.shown()}")


@warehouse.command()
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The DuckDB warehouse file whose history to move.",
)
@click.option("--no-rebuild", is_flag=True, help="Copy the raw and history tables only; leave dbt's models unbuilt.")
def migrate(source: Path, no_rebuild: bool) -> None:
    """Copy a DuckDB warehouse's raw data (with dlt's load state, so the next load reads only
    what is new) and history (quality, privacy) into the PostgreSQL target, then rebuild every
    dbt model there from it (`dbt build --full-refresh`)."""
    from data_spine.warehouse_transfer import copy_history

    target = Warehouse.of(settings())
    if not target.is_postgres:
        raise click.UsageError("set SPINE_WAREHOUSE_TARGET=postgres (and SPINE_POSTGRES_URL) to move onto PostgreSQL")
    started = time.perf_counter()
    click.echo(f"Copying the raw and history schemas of {source} into {target.pg_parts()['dbname']} ...")
    copied = copy_history(source, target, progress=click.echo)
    rows = sum(c.rows for c in copied)
    click.echo(f"Copied {len(copied)} tables, {rows:,} rows, in {time.perf_counter() - started:.0f} s.")
    if no_rebuild:
        return
    from orchestration.dbt_manifest import dbt_cli, dbt_vars, prepare, vars_args

    cfg = settings()
    as_of = cfg.as_of or datetime.now(UTC).date()
    prepare(as_of=as_of)
    click.echo("Rebuilding every dbt model on PostgreSQL (dbt build --full-refresh) ...")
    invocation = dbt_cli().cli(
        ["build", "--full-refresh", *vars_args(dbt_vars(as_of, cfg.warehouse))], raise_on_error=False
    )
    for line in invocation.stream_raw_events():
        message = line.raw_event.get("info", {}).get("msg", "")
        if line.raw_event.get("info", {}).get("level") in ("error", "warn"):
            click.echo(f"  dbt: {message}")
    if not invocation.is_successful():
        raise click.ClickException("dbt build failed on PostgreSQL (see above); the copied history is in place")
    click.echo(f"Done in {time.perf_counter() - started:.0f} s: the spine now runs on PostgreSQL.")
