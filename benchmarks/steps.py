"""The measured steps, each run as its own process by `benchmarks.measure.run_step`.

    python -m benchmarks.steps generate --preset large --seed 42 --result r.json
    python -m benchmarks.steps duckdb   --result r.json
    python -m benchmarks.steps usage    --result r.json
    python -m benchmarks.steps api stripe --base-url http://127.0.0.1:PORT/stripe --result r.json

Paths come from the environment the harness sets (`SPINE_DATA_DIR`, `SPINE_WAREHOUSE`,
`SPINE_LANDING_DIR`), as they do for the product. Each step writes `records`, `seconds` (the
work alone, without interpreter start-up and imports) and whatever else explains the figure.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path

import click

from data_spine.settings import settings


def _write(result: Path, **figures) -> None:
    result.write_text(json.dumps(figures, indent=2, default=str))


@click.group()
def main() -> None:
    pass


result_option = click.option("--result", type=click.Path(path_type=Path), required=True)


@main.command()
@click.option("--preset", required=True)
@click.option("--seed", type=int, required=True)
@result_option
def generate(preset: str, seed: int, result: Path) -> None:
    from sample_company.generate import generate as run_generate

    cfg = settings()
    started = time.perf_counter()
    manifest = run_generate(cfg.sources_dir, cfg.landing_dir, preset=preset, seed=seed, log=print)
    seconds = time.perf_counter() - started
    counts = manifest["counts"]
    api_records = sum(n for system, objs in counts.items() if system != "usage" for n in objs.values())
    _write(
        result,
        records=api_records + counts["usage"]["events"],
        seconds=seconds,
        api_records=api_records,
        usage_events=counts["usage"]["events"],
        files=counts["usage"]["files"],
    )


@main.command()
@result_option
def duckdb(result: Path) -> None:
    """DuckDB alone reading the landing files into a fresh database: the ceiling for `usage`."""
    import duckdb as ddb

    from connectors.usage_events import PATTERN

    cfg = settings()
    files = str(cfg.landing_dir / PATTERN)
    started = time.perf_counter()
    with ddb.connect(str(cfg.warehouse)) as con:
        con.execute("set enable_progress_bar = false")
        con.execute("create schema raw_usage_events")
        con.execute(
            "create table raw_usage_events.events as select * from read_json(?, format = 'newline_delimited')", [files]
        )
        (records,) = con.execute("select count(*) from raw_usage_events.events").fetchone()
        threads = con.execute("select current_setting('threads')").fetchone()[0]
    _write(result, records=records, seconds=time.perf_counter() - started, duckdb_threads=threads)


def _load(source: str, result: Path, **overrides) -> None:
    """Run the product's pipeline for one source and report what its load wrote."""
    from dlt.common.schema.utils import is_nested_table

    from connectors.pipelines import load

    started = time.perf_counter()
    info = load(source, settings(), **overrides)
    seconds = time.perf_counter() - started
    pipeline = info.pipeline
    trace = pipeline.last_trace
    rows = trace.last_normalize_info.row_counts
    tables = pipeline.default_schema.tables
    # A record is an object the source serves: a row of a table named after its resource.
    # Child tables (subscription items, ticket custom fields, nested or keyed by their
    # parent) hold parts of one, and quarantine rows were not loaded.
    records = {
        t: n
        for t, n in rows.items()
        if t in tables
        and not t.startswith("_dlt")
        and not is_nested_table(tables[t])
        and tables[t].get("resource", t) == t
    }
    if source == "usage_events":
        # Events are loaded by one SQL statement, which dlt counts as one item: count the rows.
        with pipeline.sql_client() as client:
            [(events,)] = client.execute_sql(f"select count(*) from {client.make_qualified_table_name('events')}")
        records["events"] = events
    phases = {
        s.step: (s.finished_at - s.started_at).total_seconds()
        for s in trace.steps
        if s.step in ("extract", "normalize", "load") and s.finished_at
    }
    nested = {t: n for t, n in rows.items() if t not in records and not t.startswith("_dlt")}
    _write(result, records=sum(records.values()), seconds=seconds, phases=phases, tables=records, nested_rows=nested)


@main.command()
@result_option
def usage(result: Path) -> None:
    """The usage-events connector, from the landing folder into a fresh warehouse."""
    _load("usage_events", result)


@main.command()
@click.argument("source", type=click.Choice(["stripe", "hubspot", "zendesk"]))
@click.option("--base-url", required=True)
@result_option
def api(source: str, base_url: str, result: Path) -> None:
    """One API connector, end to end: HTTP pages from the vendor API into a fresh warehouse."""
    from sample_company.vendor_api import DEMO_CREDENTIALS

    credentials = {
        "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
        "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
        "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
    }[source]
    _load(source, result, base_url=base_url, **credentials)


as_of_option = click.option("--as-of", required=True, help="The company's as-of date (its manifest's).")


@main.command()
@click.option("--base-url", "base_urls", multiple=True, required=True, metavar="SOURCE=URL")
@as_of_option
@result_option
def build(base_urls: tuple[str, ...], as_of: str, result: Path) -> None:
    """Everything the suites look at: all four sources loaded into one warehouse, then `dbt build`.

    A preparation for the `validate` steps, reported but not held to a target."""
    import subprocess

    from orchestration.dbt_manifest import DBT_DIR, DBT_EXECUTABLE
    from sample_company.vendor_api import DEMO_CREDENTIALS

    cfg = settings()
    urls = dict(u.split("=", 1) for u in base_urls)
    credentials = {
        "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
        "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
        "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
    }
    started = time.perf_counter()
    phases = {}
    from connectors.pipelines import load

    for source in ("usage_events", "stripe", "hubspot", "zendesk"):
        t = time.perf_counter()
        load(source, cfg, **({} if source == "usage_events" else {"base_url": urls[source], **credentials[source]}))
        phases[f"load {source}"] = time.perf_counter() - t
        print(f"  loaded {source} in {phases[f'load {source}']:,.1f}s", flush=True)
    t = time.perf_counter()
    # Its own target folder: the project's partial-parse cache is left to the product's runs.
    # The pipeline's build (orchestration/transformation.py): dbt's unit tests left out.
    run = subprocess.run(
        [
            DBT_EXECUTABLE,
            "build",
            "--exclude-resource-type",
            "unit_test",
            "--quiet",
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target-path",
            str(cfg.data_dir / "dbt_target"),
            "--vars",
            json.dumps({"as_of_date": as_of}),
        ],
        env={**os.environ, "SPINE_WAREHOUSE": str(cfg.warehouse)},
        capture_output=True,
        text=True,
    )
    if run.returncode:
        raise SystemExit(f"dbt build failed:\n{run.stdout[-4000:]}")
    phases["dbt build"] = time.perf_counter() - t
    import duckdb as ddb

    with ddb.connect(str(cfg.warehouse), read_only=True) as con:
        (rows,) = con.execute("select sum(estimated_size) from duckdb_tables() where schema_name = 'marts'").fetchone()
    _write(result, records=int(rows), seconds=time.perf_counter() - started, timings=phases, as_of=as_of)


@main.command()
@click.argument("entity")
@as_of_option
@result_option
def validate(entity: str, as_of: str, result: Path) -> None:
    """One entity's suite, in the warehouse `build` made: Great Expectations metrics computed in DuckDB."""
    import duckdb as ddb

    from expectations.runner import validate_entity
    from expectations.suites import get_suite
    from orchestration.resources import quality_from_env

    cfg = settings()
    suite = get_suite(entity)
    with ddb.connect(str(cfg.warehouse), read_only=True) as con:
        rows = {t: con.execute(f"select count(*) from marts.{t}").fetchone()[0] for t in suite.publishes}
    import great_expectations  # noqa: F401 - imported before the clock starts, as a running step has it

    duckdb_settings = quality_from_env().duckdb_settings()  # as the product's audits run
    started = time.perf_counter()
    results = validate_entity(
        cfg.warehouse,
        entity,
        run_id=f"bench-{int(time.time())}",
        as_of=date.fromisoformat(as_of),
        settings=duckdb_settings,
    )
    seconds = time.perf_counter() - started
    _write(
        result,
        records=sum(rows.values()),
        seconds=seconds,
        tables=rows,
        checks=len(results),
        failed=sum(not r.success for r in results),
        errors=sum(bool(r.error) for r in results),
        duckdb_memory_limit=duckdb_settings.memory_limit,
    )


if __name__ == "__main__":
    main()
