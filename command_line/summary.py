"""What a pipeline run built, printed for a person at the end of `spine run`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import click
import duckdb
import psycopg2

from command_line.known_defects import KnownDefects
from connectors.pipelines import DATASETS
from connectors.quarantine import TABLE as QUARANTINE
from data_spine.settings import settings
from data_spine.warehouse import Warehouse
from expectations.runner import ALL_ROWS, RESULTS_TABLE
from orchestration.errors import first_line, first_line_of

# dbt assets are keyed `<layer>/<model>` (orchestration/transformation.py).
DBT_LAYERS = ("seeds", "staging", "intermediate", "marts")


def _warehouse(warehouse: Path | Warehouse) -> Warehouse:
    """A warehouse given as the DuckDB file's path, as the earlier callers give it."""
    return warehouse if isinstance(warehouse, Warehouse) else Warehouse("duckdb", Path(warehouse), "")


def _exists(warehouse: Warehouse) -> bool:
    """Whether there is a warehouse to read: the DuckDB file, or a PostgreSQL database that answers."""
    if not warehouse.is_postgres:
        return warehouse.duckdb_path.exists()
    try:
        warehouse.connect(read_only=True).close()
    except psycopg2.Error:
        return False
    return True


def _raw_tables_sql(warehouse: Warehouse) -> str:
    if warehouse.is_postgres:
        return (
            "select table_schema, table_name from information_schema.tables "
            "where table_schema like 'raw\\_%' and table_type = 'BASE TABLE' "
            "and table_name not like '\\_dlt%' order by 1, 2"
        )
    return (
        "select schema_name, table_name from duckdb_tables() "
        "where schema_name like 'raw_%' and table_name not like '\\_dlt%' escape '\\' order by 1, 2"
    )


def raw_row_counts(warehouse: Path | Warehouse) -> dict[str, dict[str, int]]:
    """Rows per raw table, per source (dlt's bookkeeping tables left out)."""
    counts: dict[str, dict[str, int]] = {}
    warehouse = _warehouse(warehouse)
    with warehouse.connect(read_only=True) as con:
        tables = con.execute(_raw_tables_sql(warehouse)).fetchall()
        for schema, table in tables:
            n = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            counts.setdefault(schema, {})[table] = n
    return counts


def print_alerts(done, raised: str = "raised this run", known: KnownDefects | None = None) -> None:
    """What a dispatch raised and, per channel, what it delivered and what is still owed: an
    alert counts as sent only where it arrived. An alert a known defect explains says so."""
    from orchestration.resources import alerts_from_env

    store = alerts_from_env().store().path
    click.echo()
    click.echo(click.style(f"Alerts: {done.describe(raised)}", fg="yellow" if done.owed else None))
    for alert in done.raised:
        colour = "green" if alert.status == "resolved" else "red" if alert.severity == "critical" else "yellow"
        explained = known.of_alert(alert.dataset, alert.what) if known else None
        line = f"  {alert.status:<8} {alert.severity:<8} {alert.dataset}: {alert.what}"
        click.echo(click.style(line, fg=colour) + (f" - {explained.label()}" if explained else ""))
    click.echo(f"  (log: {alerts_from_env().log_path}; deliveries owed and set aside: {store})")


def print_headline(warehouse: Path | Warehouse, as_of: str | None) -> None:
    """The numbers the platform exists for, from what consumers read (`serving`)."""
    from reporting.figures import headline

    day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    try:
        with _warehouse(warehouse).connect(read_only=True) as con:
            shown = {f.name: f for f in headline(con, day)}
    except (duckdb.Error, psycopg2.Error) as exc:  # nothing served yet (a first run that failed early)
        click.echo(f"\nNo customer and revenue figures: {first_line(str(exc))}")
        return
    churned = shown["churned_customers"]
    click.echo(f"\nCustomers and revenue as of {day.isoformat()} (serving):")
    for label, value in (
        ("active customers", shown["active_customers"].shown()),
        ("MRR", shown["mrr"].shown()),
        ("ARR", shown["arr"].shown()),
        ("NRR, 12 months", shown["nrr"].shown()),
        (
            "churned this month",
            f"{churned.shown()} customer{'' if churned.value == 1 else 's'}, {shown['churned_mrr'].shown()} MRR",
        ),
    ):
        click.echo(f"  {label:<19} {value}")


def failing_checks(warehouse: Path | Warehouse, run_id: str) -> list[dict]:
    """The expectations a run's audits found failing, worst first."""
    with _warehouse(warehouse).connect(read_only=True) as con:
        cursor = con.execute(
            f"""
            select entity, check_name, severity, unexpected_count, element_count, rows_checked
            from {RESULTS_TABLE} where run_id = ? and not success
            order by severity = 'blocking' desc, entity, check_name
            """,
            [run_id],
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def print_checks(result, warehouse: Path | Warehouse, known: KnownDefects) -> None:
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    click.echo(
        f"Asset checks: {len(checks)} run, {len(checks) - len(failed)} passed, {len(failed)} failed"
        + ("; what failed, expectation by expectation:" if failed else "")
    )
    unexplained = 0
    for c in failed:
        if c.asset_key.path[0] == "audit":
            continue  # told expectation by expectation below
        explained = known.of_dbt_test(c.check_name)
        unexplained += explained is None
        click.echo(
            f"  {c.severity.value.lower():<8} dbt {c.asset_key.to_user_string()} / {c.check_name}"
            + (f" - {explained.label()}" if explained else "")
        )
    if _exists(_warehouse(warehouse)):
        for row in failing_checks(warehouse, result.run_id):
            explained = known.of_check(row["entity"], row["check_name"])
            # A check of the rows a daily run wrote counts the day's share of a defect, not all of it.
            counted = row["unexpected_count"] if row["rows_checked"] == ALL_ROWS else None
            unexplained += explained is None or explained.differs(counted)
            found = f"{row['unexpected_count'] or 0:,} of {row['element_count'] or 0:,}"
            click.echo(
                f"  {row['severity']:<8} {row['entity']} / {row['check_name']}: {found}"
                + (f" - {explained.label(counted)}" if explained else "")
            )
    if failed and known:
        if unexplained:
            click.echo(click.style(f"  {unexplained} of these are not the sample company's known defects", fg="red"))
        else:
            click.echo("  every failure above is one of the sample company's known defects (spine run --clean: none)")


def print_summary(result, alerts, elapsed: float, manifest: dict | None = None) -> None:
    """What a run built, headline numbers first; `manifest`: the sample company's, whose known
    defects explain the failures they cause."""
    cfg = settings()
    known = KnownDefects(manifest)
    status = click.style("succeeded", fg="green") if result.success else click.style("FAILED", fg="red")
    click.echo(f"\nspine_job {status} in {elapsed:.0f}s (Dagster run {result.run_id})")
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        message = first_line_of(error) if error else "no error recorded"
        click.echo(click.style(f"  step {event.step_key} failed: ", fg="red") + message)
    warehouse = Warehouse.of(cfg)
    available = _exists(warehouse)
    if available:
        print_headline(warehouse, (manifest or {}).get("as_of") or (cfg.as_of and cfg.as_of.isoformat()))

    if available:
        click.echo(f"\nRows loaded per source ({warehouse.shown()}):")
        counts = raw_row_counts(warehouse)
        for source, schema in DATASETS.items():
            tables = counts.get(schema, {})
            held = tables.pop(QUARANTINE, 0)
            detail = ", ".join(f"{t} {n:,}" for t, n in tables.items())
            click.echo(f"  {source:<13} {sum(tables.values()):>9,}  ({detail})")
            if held:
                click.echo(click.style(f"  {'':<13} {held:>9,}  quarantined: see {schema}.{QUARANTINE}", fg="yellow"))

    materialized = [e.asset_key for e in result.get_asset_materialization_events()]
    layers: dict[str, list[str]] = {}
    for key in materialized:
        if len(key.path) == 2 and key.path[0] in DBT_LAYERS:
            layers.setdefault(key.path[0], []).append(key.path[1])
    built = ", ".join(f"{layer} {len(layers[layer])}" for layer in DBT_LAYERS if layer in layers)
    click.echo(f"\nAssets materialized: {len(materialized)}; dbt models and seeds built: {built or 'none'}")
    served = sorted(key.path[1] for key in materialized if key.path[0] == "serving")
    if served:
        click.echo(f"  published to serving after their audit: {len(served)} tables")
    print_checks(result, warehouse, known)

    scorecard_path = cfg.reports_dir / "scorecard.json"
    if scorecard_path.exists():
        from quality.scorecard import format_summary

        click.echo("\nData-quality scorecard:")
        click.echo(format_summary(json.loads(scorecard_path.read_text())))
        click.echo(
            "timeliness: how old the newest data is at the as-of time; the Dagster UI's freshness: how long "
            "since each asset was last loaded or built (a feed that loads nothing new passes that, fails this)"
        )

    held = [e for e in result.get_step_failure_events() if e.step_key.startswith("publish_")]
    if held:
        click.echo(click.style("\nNot published (serving keeps the last good version):", fg="red", bold=True))
        for event in held:
            error = event.step_failure_data.error
            click.echo(click.style(f"  {first_line_of(error) if error else event.step_key}", fg="red"))

    print_alerts(alerts, known=known)

    click.echo("\nReports:")
    for label, path in (
        ("scorecard", cfg.reports_dir / "scorecard.html"),
        ("scorecard data", scorecard_path),
        ("scorecard digest", cfg.reports_dir / "scorecard.md"),
        ("revenue report", cfg.reports_dir / "revenue.html"),
        ("GX Data Docs", cfg.reports_dir / "gx_data_docs" / "index.html"),
        ("dbt docs", cfg.reports_dir / "dbt_docs" / "index.html"),
    ):
        mark = "" if path.exists() else "  (missing)"
        click.echo(f"  {label:<17} {path}{mark}")
    click.echo(f"  {'warehouse':<17} {warehouse.shown()}{'' if available else '  (missing)'}")
    click.echo("\nExplore in the Dagster UI: .venv/bin/spine dev   (then open http://127.0.0.1:3000)")
