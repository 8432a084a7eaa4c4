"""What a pipeline run built, printed for a person at the end of `spine run`."""

from __future__ import annotations

import json

import click
import duckdb

from connectors.pipelines import DATASETS
from connectors.quarantine import TABLE as QUARANTINE
from data_spine.settings import settings
from orchestration.errors import first_line_of

# dbt assets are keyed `<layer>/<model>` (orchestration/transformation.py).
DBT_LAYERS = ("seeds", "staging", "intermediate", "marts")


def raw_row_counts(warehouse) -> dict[str, dict[str, int]]:
    """Rows per raw table, per source (dlt's bookkeeping tables left out)."""
    counts: dict[str, dict[str, int]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "select schema_name, table_name, estimated_size from duckdb_tables() "
            "where schema_name like 'raw_%' and table_name not like '\\_dlt%' escape '\\' order by 1, 2"
        ).fetchall()
        for schema, table, _ in tables:
            n = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            counts.setdefault(schema, {})[table] = n
    return counts


def print_alerts(done, raised: str = "raised this run") -> None:
    """What a dispatch raised and, per channel, what it delivered and what is still owed: an
    alert counts as sent only where it arrived."""
    from orchestration.resources import alerts_from_env

    store = alerts_from_env().store().path
    click.echo()
    click.echo(click.style(f"Alerts: {done.describe(raised)}", fg="yellow" if done.owed else None))
    for alert in done.raised:
        colour = "green" if alert.status == "resolved" else "red" if alert.severity == "critical" else "yellow"
        click.echo(click.style(f"  {alert.status:<8} {alert.severity:<8} {alert.dataset}: {alert.what}", fg=colour))
    click.echo(f"  (log: {alerts_from_env().log_path}; deliveries owed and set aside: {store})")


def print_summary(result, alerts, elapsed: float) -> None:
    cfg = settings()
    status = click.style("succeeded", fg="green") if result.success else click.style("FAILED", fg="red")
    click.echo(f"\nspine_job {status} in {elapsed:.0f}s (Dagster run {result.run_id})")
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        message = first_line_of(error) if error else "no error recorded"
        click.echo(click.style(f"  step {event.step_key} failed: ", fg="red") + message)

    if cfg.warehouse.exists():
        click.echo(f"\nRows loaded per source ({cfg.warehouse}):")
        counts = raw_row_counts(cfg.warehouse)
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
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    built = ", ".join(f"{layer} {len(layers[layer])}" for layer in DBT_LAYERS if layer in layers)
    click.echo(f"\nAssets materialized: {len(materialized)}; dbt models and seeds built: {built or 'none'}")
    if layers.get("marts"):
        click.echo(f"  marts: {', '.join(sorted(layers['marts']))}")
    served = sorted(key.path[1] for key in materialized if key.path[0] == "serving")
    if served:
        click.echo(f"  published to serving after their audit: {len(served)} tables")
    click.echo(f"Asset checks: {len(checks)} run, {len(checks) - len(failed)} passed, {len(failed)} failed")
    for c in failed:
        click.echo(f"  failed: {c.asset_key.to_user_string()} / {c.check_name} ({c.severity.value})")

    scorecard_path = cfg.reports_dir / "scorecard.json"
    if scorecard_path.exists():
        from quality.scorecard import format_summary

        click.echo("\nData-quality scorecard:")
        click.echo(format_summary(json.loads(scorecard_path.read_text())))

    held = [e for e in result.get_step_failure_events() if e.step_key.startswith("publish_")]
    if held:
        click.echo(click.style("\nNot published (serving keeps the last good version):", fg="red", bold=True))
        for event in held:
            error = event.step_failure_data.error
            click.echo(click.style(f"  {first_line_of(error) if error else event.step_key}", fg="red"))

    print_alerts(alerts)

    click.echo("\nReports:")
    for label, path in (
        ("scorecard", cfg.reports_dir / "scorecard.html"),
        ("scorecard data", scorecard_path),
        ("scorecard digest", cfg.reports_dir / "scorecard.md"),
        ("dbt docs", cfg.reports_dir / "dbt_docs" / "index.html"),
        ("warehouse", cfg.warehouse),
    ):
        mark = "" if path.exists() else "  (missing)"
        click.echo(f"  {label:<17} {path}{mark}")
    click.echo("\nExplore in the Dagster UI: .venv/bin/spine dev   (then open http://127.0.0.1:3000)")
