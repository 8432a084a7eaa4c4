"""`spine`: the command line for running the platform locally.

spine run        generate the sample company (if needed), serve its vendor APIs and run the
                 whole pipeline as the Dagster job `spine_job`, then print what it built
spine generate   (re)generate the sample company (with known defects; --clean for none)
spine change     change a share of the sample company's records (updates and deletes)
spine add-day    move the sample company on a day: changed records and a day of usage events
spine serve      serve the sample company's Stripe/HubSpot/Zendesk-style APIs
spine alerts     announce what changed and deliver the alerts still owed to a channel
spine dev        serve the vendor APIs and start the Dagster UI (`dagster dev`)
spine sql        ask the warehouse: a query's result as a table, or a SQL prompt, read-only
spine docs       serve the dbt docs site and the reports it links (data/reports) over HTTP
spine prepare    prepare the dbt manifest the Dagster definitions load
spine privacy    data-subject requests, their deadlines, retention, the personal-data scan
spine warehouse  which warehouse the configuration picks; move a DuckDB warehouse onto PostgreSQL
spine service    the spine as a service: Dagster's instance on PostgreSQL, webserver, daemon,
                 code server and Celery workers as processes of their own
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import click

from command_line.interrupts import quiet_on_interrupt
from command_line.local_vendors import dlt_env, local_vendor_apis, port_free, vendor_port_option
from command_line.privacy_commands import privacy
from command_line.service_commands import service
from command_line.warehouse_commands import warehouse
from data_spine.gc_tuning import freeze_loaded
from data_spine.resource_errors import ResourceErrorsGroup, check_run
from data_spine.settings import PROJECT_ROOT, settings
from sample_company.defects import DEFECT_NAMES
from sample_company.presets import PRESETS


def _use_persistent_dagster_home() -> Path:
    home = settings().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    return home


def _defect_rates(spec: str):
    from sample_company.defects import DefectRates

    try:
        return DefectRates.parse(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--defects / SPINE_DEFECTS") from None


def _variant(spec: str):
    from sample_company.variants import Variant

    try:
        return Variant.parse(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--variant / SPINE_VARIANT") from None


def _ensure_company(
    preset: str, seed: int, as_of: date | None, regenerate: bool, defects: str = "default", variant: str = "default"
) -> dict:
    from dataclasses import asdict

    from sample_company.generate import generate, read_manifest

    cfg = settings()
    rates = _defect_rates(defects)
    shape = _variant(variant)
    try:
        manifest = read_manifest(cfg.sources_dir)
        same = manifest["preset"]["name"] == preset and manifest["seed"] == seed
        same = same and (as_of is None or manifest["as_of"] == as_of.isoformat())
        same = same and manifest.get("defects", {}).get("rates") == asdict(rates)
        same = same and manifest.get("variant") == shape.as_dict()
        if same and not regenerate:
            click.echo(f"Using the generated {preset!r} company in {cfg.sources_dir} (as of {manifest['as_of']}).")
            return manifest
    except FileNotFoundError:
        pass
    return generate(
        cfg.sources_dir,
        cfg.landing_dir,
        preset=preset,
        seed=seed,
        as_of=as_of,
        defects=rates,
        variant=shape,
        log=click.echo,
    )


class SpineGroup(ResourceErrorsGroup):
    """`spine`'s commands: a wrong option or value ends in one line that names the valid
    choices, and exit status 2, instead of click's usage block."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            outcome = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "spine"
            click.echo(f"{command}: {exc.format_message()} (see {command} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # Without standalone mode click returns what a command returned, or an exit status.
        sys.exit(outcome if isinstance(outcome, int) else 0)


@click.group(cls=SpineGroup)
def main() -> None:
    """Data Spine: one trusted view of a SaaS company's customers."""
    # A command reads the settings of the environment it is started in (in one process, a
    # test's CliRunner starts several commands, each with an environment of its own).
    settings.cache_clear()


preset_option = click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=lambda: settings().preset,
    show_default="small",
    help="Scale of the sample company: "
    + "; ".join(f"{p.name} {p.companies:,} companies, {p.usage_events:,} events" for p in PRESETS.values())
    + " (env SPINE_PRESET).",
)
seed_option = click.option("--seed", type=int, default=lambda: settings().seed, show_default="42")
as_of_option = click.option(
    "--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day of history (default: yesterday)."
)
defects_option = click.option(
    "--defects",
    default=lambda: settings().defects,
    show_default="default",
    metavar="SPEC",
    help="Known defects to inject: default, none (a clean company), or NAME=RATE,... overrides "
    f"(e.g. none,late_event=0.05) of {', '.join(DEFECT_NAMES)}; env SPINE_DEFECTS.",
)
clean_option = click.option("--clean", is_flag=True, help="A clean company without defects (same as --defects none).")
variant_option = click.option(
    "--variant",
    default=lambda: settings().variant,
    show_default="default",
    metavar="SPEC",
    help="How vendor-realistic the company looks: NAME=VALUE,... with stripe_api (2024-06-20, 2025-03-31.basil, "
    "2025-09-30.clover), product_ids (named, generated), custom_fields (present, absent), events (spine, segment, "
    "rudderstack, snowplow), trials (yes, no), coupons (yes, no); env SPINE_VARIANT.",
)


# `spine serve` and `spine run` have one port, so `--port` names it; `spine dev` has two.
port_option = vendor_port_option("--port")


@main.command()
@preset_option
@seed_option
@as_of_option
@defects_option
@clean_option
@variant_option
def generate(preset: str, seed: int, as_of, defects: str, clean: bool, variant: str) -> None:
    """Generate the sample company (sources and landing files), with known defects unless --clean."""
    from sample_company.generate import generate as run_generate

    cfg = settings()
    rates = _defect_rates("none" if clean else defects)
    run_generate(
        cfg.sources_dir,
        cfg.landing_dir,
        preset=preset,
        seed=seed,
        as_of=as_of.date() if as_of else None,
        defects=rates,
        variant=_variant(variant),
        log=click.echo,
    )


def change_options(what: str):
    """--fraction and --seed of the commands that change the sample company's records."""

    def decorate(command):
        command = click.option("--seed", type=int, default=1, show_default=True, help="Which records change.")(command)
        return click.option(
            "--fraction",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.01,
            show_default=True,
            help=f"Share of each API object's records {what}.",
        )(command)

    return decorate


@main.command()
@change_options("to change")
def change(fraction: float, seed: int) -> None:
    """Change records in the sample company's SaaS tools, as a day of work would.

    Updates (and deletes, archives or cancels) a share of every Stripe, HubSpot and Zendesk
    object, the way each vendor records it; a running `spine serve` picks the edits up. The
    next `spine run` loads exactly these changes.
    """
    from sample_company.changes import change_sources, describe

    cfg = settings()
    if not (cfg.sources_dir / "stripe").exists():
        raise click.ClickException("no sample company yet: run `spine generate` first")
    for line in describe(change_sources(cfg.sources_dir, fraction=fraction, seed=seed)):
        click.echo(line)


@main.command("add-day")
@change_options("that change during the day")
def add_day(fraction: float, seed: int) -> None:
    """Move the sample company on by one day, as a daily run finds it.

    A share of every Stripe, HubSpot and Zendesk object changes (as `spine change` does) and
    the event collector delivers one more day of usage events; the company's as-of date moves
    to the next day. The next `spine run` is that day's run: it loads only what the day brought.
    """
    from sample_company.next_day import add_day as run_add_day

    cfg = settings()
    if not (cfg.sources_dir / "stripe").exists():
        raise click.ClickException("no sample company yet: run `spine generate` first")
    run_add_day(cfg.sources_dir, cfg.landing_dir, fraction=fraction, seed=seed, log=click.echo)


@main.command()
@port_option
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=VALUE",
    help="Misbehave like a real API, e.g. --fault latency=0.2 --fault server_errors=3 "
    "--fault requests_per_second=20, or answer a share of requests with errors: --fault server_error_rate=0.2 "
    "--fault rate_limit_rate=0.1 --fault seed=7 (see sample_company/vendor_api/faults.py).",
)
def serve(port: int, faults: tuple[str, ...]) -> None:
    """Serve the sample company's vendor APIs until interrupted."""
    from sample_company.vendor_api.faults import parse_fault_options

    try:
        injected = parse_fault_options(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    with local_vendor_apis(port, own_process=False) as (server, _):
        if injected:
            click.echo(f"Injecting faults: {server.faults.set(**injected)}")
        click.echo("Press Ctrl+C to stop.")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


@main.command()
@preset_option
@seed_option
@as_of_option
@defects_option
@clean_option
@variant_option
@port_option
@click.option("--regenerate", is_flag=True, help="Regenerate the sample company even if it exists.")
@click.option("--verbose", "-v", is_flag=True, help="Print every Dagster event, not just step progress.")
@click.option(
    "--no-docs",
    is_flag=True,
    help="Leave the dbt docs site as it is (a run regenerates it, about 15 s, when the "
    "dbt project or the warehouse's tables and columns changed).",
)
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Rebuild the incremental dbt models (the usage events and what is counted from them) from "
    "the whole history instead of what changed; their tests then check every row.",
)
def run(
    preset: str,
    seed: int,
    as_of,
    defects: str,
    clean: bool,
    variant: str,
    port: int,
    regenerate: bool,
    verbose: bool,
    no_docs: bool,
    full_refresh: bool,
) -> None:
    """Run the whole pipeline on the sample company and print what it built."""
    started = time.perf_counter()
    _use_persistent_dagster_home()
    result = None
    with quiet_on_interrupt() as interrupts:
        try:
            from orchestration.run_recovery import recover_dead_runs, stop_runs_of_this_process

            interrupts.then(stop_runs_of_this_process)
            # A run killed earlier still holds its warehouse slot: end it, or this run waits forever.
            for line in recover_dead_runs(_dagster_instance()):
                click.echo(line)
            manifest = _ensure_company(
                preset, seed, as_of.date() if as_of else None, regenerate, "none" if clean else defects, variant
            )
            with local_vendor_apis(port) as (_, vendors):
                result = execute_spine_job(
                    log_level="DEBUG" if verbose else "INFO",
                    docs=not no_docs,
                    as_of=manifest["as_of"],
                    vendors=vendors,
                    full_refresh=full_refresh,
                )
            if interrupts.pending():
                interrupts.exit(cancelled(result.run_id))
            dispatched = send_alerts()
            from command_line.summary import print_summary

            print_summary(result, dispatched, elapsed=time.perf_counter() - started, manifest=manifest)
            if not result.success:
                check_run(result)  # a full disk, a locked warehouse: one line saying what to do
                raise SystemExit(1)
        except KeyboardInterrupt:
            interrupts.exit(
                cancelled(result.run_id)
                if result
                else "spine run cancelled before its Dagster run started; nothing was changed."
            )


def _dagster_instance():
    from orchestration.run_recovery import persistent_instance

    return persistent_instance()


def prepare_dbt(as_of: date | None = None, background: bool = False) -> threading.Thread | None:
    """Parse the dbt project when its manifest is missing or older than its files, before the
    definitions are loaded (loading them runs nothing); given the day of the runs to come
    (`as_of`), also when it was parsed for another day, so their dbt commands start from it.

    With `background`, a parse wanted only for the new day (the asset graph is current) runs
    on a thread while the run loads its sources: the dbt step waits for it
    (`prepare_for_run`). Returns that thread."""
    from orchestration.dbt_manifest import prepare, stale

    if not stale(as_of=as_of):
        return None
    if background and not stale():
        click.echo("Parsing the dbt project for the new day (dbt parse), while the sources load ...")
        thread = threading.Thread(target=_parse_for_the_day, args=(as_of,), name="dbt parse", daemon=True)
        thread.start()
        return thread
    click.echo("Parsing the dbt project (dbt parse) ...")
    prepare(as_of=as_of)
    return None


def _parse_for_the_day(as_of: date | None) -> None:
    from orchestration.dbt_manifest import prepare

    # A parse that fails here fails again, with its cause, in the dbt step that needs it.
    with contextlib.suppress(Exception):
        prepare(as_of=as_of)


def cancelled(run_id: str) -> str:
    """The one line `spine run` ends with after Ctrl-C; the run's pool slots are freed first."""
    import dagster as dg

    from orchestration.run_recovery import free_slots, interrupted_steps

    instance = _dagster_instance()
    run = instance.get_run_by_id(run_id)
    if run and run.status == dg.DagsterRunStatus.CANCELING:
        # Dagster writes a canceled run's end after its steps stop; an interrupt arriving as it
        # does can leave the run CANCELING with nothing of it running in this process, which
        # is about to exit. End it here, as the next run's recovery of a dead run would.
        instance.report_run_canceled(run, "Interrupted (Ctrl-C or SIGTERM); spine run has stopped the run.")
        run = instance.get_run_by_id(run_id)
    free_slots(instance, run_id)
    status = run.status.value.lower() if run else "unknown"
    if run and run.status == dg.DagsterRunStatus.SUCCESS:
        return f"spine run cancelled after Dagster run {run_id} succeeded; its alerts and summary were skipped."
    steps = interrupted_steps(instance, run_id)
    where = f"stopped during {', '.join(steps)}" if steps else "stopped"
    return f"spine run cancelled: Dagster run {run_id} {where}, marked {status}; no warehouse slot left claimed."


def execute_spine_job(
    log_level: str = "INFO",
    docs: bool = True,
    as_of: str | None = None,
    vendors: dict[str, dict[str, str]] | None = None,
    full_refresh: bool = False,
):
    """Run `spine_job` in this process, recorded in the persistent Dagster instance; without
    `docs`, every asset but the dbt docs site; with `full_refresh`, the incremental dbt models
    rebuilt from the whole history. `as_of` (the day the data describes) and `vendors` (where
    the vendor APIs are) are passed to the resources as run config.

    The console shows INFO and up by default: every Dagster event is DEBUG, which for a full
    run is a thousand lines that hide the summary; the UI keeps all of them either way."""
    cfg = settings()
    as_of = as_of or (cfg.as_of.isoformat() if cfg.as_of else None)
    # The day the run describes: the warehouse resource's, today (UTC) when none is set.
    parsing = prepare_dbt(date.fromisoformat(as_of) if as_of else datetime.now(UTC).date(), background=True)
    try:
        return _execute_spine_job(log_level, docs, as_of, vendors, full_refresh)
    finally:
        if parsing is not None:
            parsing.join()  # the dbt step waited for it; a run that stopped before may not have


def _execute_spine_job(
    log_level: str, docs: bool, as_of: str | None, vendors: dict[str, dict[str, str]] | None, full_refresh: bool
):
    import dagster as dg

    cfg = settings()
    from orchestration.definitions import defs
    from orchestration.run_recovery import PID_TAG, instance_for_terminal

    instance = instance_for_terminal()
    freeze_loaded()  # the run's full collections, and the exit's, need not walk the libraries
    click.echo(f"Running Dagster job spine_job (run history in {instance.root_directory}) ...")
    from orchestration.automation import AFTER_RUN_TAG, scorecard_missing
    from orchestration.definitions import scorecard_job_definition, spine_job_definition

    resources = {
        "warehouse": {
            "config": {
                "path": str(cfg.warehouse),
                "reports_dir": str(cfg.reports_dir),
                "as_of": as_of,
                # Not the PostgreSQL URL: run config is stored with the run, and the URL may
                # carry a password; every process reads it from its own environment.
                "target": cfg.warehouse_target,
            }
        }
    }
    if vendors:
        resources["vendor_apis"] = {"config": vendors}
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}, "resources": resources}
    if full_refresh:
        run_config["ops"] = {"dbt_models": {"config": {"full_refresh": True}}}
    selection = None
    if not docs:
        selection = [
            key
            for key in defs.resolve_asset_graph().get_all_asset_keys()
            if key != dg.AssetKey("dbt_docs") and defs.resolve_asset_graph().get(key).is_materializable
        ]
    # `execute_job`, not `execute_in_process`: the latter swaps in an executor of its own, and
    # the job's executor is what lets the entities a failure does not touch go on.
    from orchestration.console import heartbeat

    with heartbeat():
        result = dg.execute_job(
            dg.reconstructable(spine_job_definition),
            instance,
            run_config=run_config,
            asset_selection=selection,
            tags={PID_TAG: str(os.getpid())},
        )
    if instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.CANCELED:
        return result  # stopped by the user (Ctrl-C): nothing more to run
    if not result.success and scorecard_missing(instance, result.run_id):
        # As the scorecard sensor does under `dagster dev`: the report shows what was held back.
        click.echo("Writing the scorecard after the failed run ...")
        dg.execute_job(
            dg.reconstructable(scorecard_job_definition),
            instance,
            tags={AFTER_RUN_TAG: result.run_id, PID_TAG: str(os.getpid())},
            run_config={**run_config, "resources": {"warehouse": resources["warehouse"]}},
        )
    return result


def send_alerts():
    """Announce what changed and deliver what earlier dispatches still owe, as the alerts sensor
    does in `spine dev` (they share their state, so nothing is announced or delivered twice);
    then bring the scorecard's alert-delivery section up to date. Returns the `Dispatch`."""
    prepare_dbt()

    from orchestration.alerts_sensor import dispatch_alerts
    from orchestration.definitions import defs
    from orchestration.resources import alerts_from_env
    from quality.scorecard import refresh_alert_delivery

    # No freshness daemon runs here, so its states may be old: leave them to the sensor.
    done = dispatch_alerts(_dagster_instance(), defs.resolve_asset_graph(), alerts_from_env(), load_freshness=False)
    refresh_alert_delivery(settings().reports_dir, done.delivery)
    return done


@main.command()
def alerts() -> None:
    """Announce what changed and deliver the alerts still owed to a channel.

    Does what `spine run` does after its job (and the alerts sensor of `spine dev` every
    minute): alerts about quality conditions whose state changed since the last dispatch,
    and every delivery an unreachable channel was owed. Prints where each channel stands and
    exits 1 while something is still owed."""
    from command_line.summary import print_alerts

    _use_persistent_dagster_home()
    done = send_alerts()
    print_alerts(done, raised="raised")
    if done.owed:
        raise SystemExit(1)


@main.command(context_settings={"ignore_unknown_options": True})
@vendor_port_option()
@click.option(
    "--ui-port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="Port of the Dagster UI."
)
@click.option("--port", "ambiguous_port", hidden=True, help="Which port: say --ui-port or --vendor-port.")
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dev(port: int, ui_port: int, ambiguous_port: str | None, dagster_args: tuple[str, ...]) -> None:
    """Serve the vendor APIs and open the Dagster UI on http://127.0.0.1:3000 (--ui-port).

    Arguments after the options go to `dagster dev` as they are (its own --port is --ui-port)."""
    if ambiguous_port is not None:
        raise click.UsageError("--port names no port here: say --ui-port (the Dagster UI) or --vendor-port")
    home = _use_persistent_dagster_home()
    try:
        from sample_company.generate import read_manifest

        as_of = read_manifest(settings().sources_dir)["as_of"]
    except FileNotFoundError:
        raise click.ClickException("no sample company yet: run `spine run` or `spine generate` first") from None
    prepare_dbt(settings().as_of or date.fromisoformat(as_of))  # the day the UI's runs describe
    with local_vendor_apis(port) as (_, vendors):
        # `dagster dev` and the processes it starts read their settings from the environment.
        env = {**os.environ, "DAGSTER_HOME": str(home), **dlt_env(vendors)}
        env.setdefault("SPINE_AS_OF", as_of)
        if not port_free(ui_port):
            raise click.ClickException(f"port {ui_port} is in use; choose another with --ui-port")
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", workspace, "--port", str(ui_port), *dagster_args]
        click.echo(" ".join(cmd))
        with contextlib.suppress(KeyboardInterrupt):
            subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, check=False)


@main.command()
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to serve on (127.0.0.1)."
)
def docs(port: int) -> None:
    """Serve the dbt docs site and the reports it links (data/reports) on http://127.0.0.1:8080."""
    from command_line.docs_site import serve

    serve(settings().reports_dir, port)


@main.command()
@click.argument("query", required=False)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How results are printed (json: one object per line).",
)
@click.option("--max-rows", type=click.IntRange(1), default=40, show_default=True, help="Rows a table shows.")
@click.option(
    "--role",
    default=None,
    metavar="ROLE",
    help="Read as a role of privacy/access_policy.yml (sales, customer_success, finance, data_science, "
    "executive, ai_agent): only what it may read, from its own file; a forbidden read says which rule denies it.",
)
def sql(query: str | None, output: str, max_rows: int, role: str | None) -> None:
    """Ask the warehouse: run QUERY (or `-` for a script on standard input) and print its
    result, or open a SQL prompt. Read-only; tables of `serving` resolve by their names.

    \b
    spine sql "select company_name, mrr from customers order by mrr desc limit 10"
    spine sql --format csv "select * from mrr_bridge" > mrr_bridge.csv
    """
    from command_line.sql_shell import connect, connect_as_role, prompt, run_statements

    if role is None and query is None and sys.stdin.isatty():
        prompt(settings().warehouse, output, max_rows)
        return
    text = sys.stdin.read() if query in (None, "-") else query
    if role is not None:
        con, denied = connect_as_role(role)
        with con:
            if not run_statements(con, text, output, max_rows, denied):
                raise SystemExit(1)
        return
    with connect(settings().warehouse) as con:
        if not run_statements(con, text, output, max_rows):
            raise SystemExit(1)


@main.command()
def prepare() -> None:
    """Prepare the dbt manifest the Dagster definitions load (the build step of a deployment)."""
    from orchestration.dbt_manifest import prepare as prepare_manifest

    click.echo(f"dbt manifest ready: {prepare_manifest()}")


@main.command()
def manifest() -> None:
    """Print the sample company's manifest (sizes, seed, as-of date, injected defects)."""
    from sample_company.generate import read_manifest

    click.echo(json.dumps(read_manifest(settings().sources_dir), indent=2))


main.add_command(privacy)
main.add_command(service)
main.add_command(warehouse)


if __name__ == "__main__":
    main()
