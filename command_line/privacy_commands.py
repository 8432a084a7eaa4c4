"""`spine privacy ...`: data-subject requests, their deadlines, retention, the personal-data scan
and what each role may read."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from command_line.local_vendors import local_vendor_apis, vendor_port_option
from data_spine.settings import settings
from data_spine.warehouse import Warehouse, duckdb_only
from orchestration.errors import first_line, first_line_of

ID_OPTIONS = {
    "hubspot_contact": "--hubspot-contact-id",
    "zendesk_user": "--zendesk-user-id",
    "product_user": "--product-user-id",
}


def subject_options(command):
    """The person: an email, and/or their ids in the systems (repeatable)."""
    for kind, flag in reversed(ID_OPTIONS.items()):
        command = click.option(
            flag, kind, multiple=True, metavar="ID", help=f"The person's {kind.replace('_', ' ')} id (repeatable)."
        )(command)
    return click.option("--email", "emails", multiple=True, metavar="EMAIL", help="The person's email (repeatable).")(
        command
    )


@click.group()
def privacy() -> None:
    """Data-subject requests (access, erasure), their deadlines, retention, the personal-data scan.
    What each role may read: `spine sql --role ROLE`."""


def _ids(options: dict) -> dict[str, list[str]]:
    return {kind: list(options.get(kind) or ()) for kind in ID_OPTIONS if options.get(kind)}


def run_request(request_id: str, vendors: dict | None = None):
    """Run the request's job in this process, recorded in the persistent Dagster instance."""
    import dagster as dg

    from orchestration import definitions
    from orchestration.privacy_jobs import request_config
    from orchestration.run_recovery import PID_TAG, instance_for_terminal
    from privacy.subject_requests import register

    request = register(settings()).get(request_id)
    job = (
        definitions.subject_erasure_job_definition
        if request.kind == "erasure"
        else definitions.subject_access_job_definition
    )
    run_config = request_config(request_id)
    if vendors:
        run_config["resources"]["vendor_apis"] = {"config": vendors}
    result = dg.execute_job(
        dg.reconstructable(job), instance_for_terminal(), run_config=run_config, tags={PID_TAG: str(os.getpid())}
    )
    if not result.success:
        register(settings()).fail(request_id, result.run_id, step_failure(result), [])
    return result


def step_failure(result) -> str:
    """The first failed step's own words (its error's message), in one line."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            return f"{event.step_key}: {first_line_of(error) if error else first_line(event.message)}"
    return "the run failed"


def _warehouse_required() -> None:
    if problem := duckdb_only(Warehouse.of(settings()), "spine privacy"):
        raise click.ClickException(problem)
    if not settings().warehouse.exists():
        raise click.ClickException(f"no warehouse at {settings().warehouse} yet: run `spine run` first")


def _run_with_vendors(request_id: str, port: int, local: bool):
    if not local:
        return run_request(request_id)
    with local_vendor_apis(port) as (_, vendors):
        return run_request(request_id, vendors)


def _report(request_id: str, result) -> None:
    from privacy.subject_requests import export_folder, register

    request = register(settings()).get(request_id)
    if result.success:
        click.echo(f"{request.id} ({request.kind}): done in Dagster run {result.run_id}.")
        if request.kind == "access":
            click.echo(f"  export: {export_folder(settings(), request.id)} (subject_access.json and one CSV per table)")
        else:
            for step in request.steps:
                if "sources" in step:
                    for call in step["sources"]:
                        click.echo(f"  {call['system']}: {call['action']} of {call['object']}: {call['status']}")
                if "stores" in step:
                    click.echo(f"  stores: {len(step['stores'])} place(s) anonymised, emptied or removed")
                if "verified" in step:
                    click.echo(f"  verified: {step['verified']['found']} occurrence(s) left in warehouse and files")
        return
    raise click.ClickException(
        f"{request.id} ({request.kind}) is not done: {request.last_error} "
        f"(Dagster run {result.run_id}; run `spine privacy run {request.id}` to try again)"
    )


local_vendors_option = click.option(
    "--local-vendors/--real-vendors",
    default=True,
    show_default=True,
    help="Call the sample company's local vendor APIs (started here) or the configured real ones (dlt config).",
)


@privacy.command()
@subject_options
@local_vendors_option
@vendor_port_option()
def erase(emails, local_vendors: bool, port: int, **ids) -> None:
    """Erase a person everywhere: at the sources, in every store, suppressed from later loads."""
    from privacy.subject_requests import receive

    _warehouse_required()
    request = receive(settings(), "erasure", list(emails), _ids(ids))
    click.echo(f"Erasure request {request.id} received (subject {request.subject_hash[:12]}...).")
    _report(request.id, _run_with_vendors(request.id, port, local_vendors))


@privacy.command()
@subject_options
def access(emails, **ids) -> None:
    """Export every record about a person, in every layer, as JSON and CSV."""
    from privacy.subject_requests import receive

    _warehouse_required()
    request = receive(settings(), "access", list(emails), _ids(ids))
    click.echo(f"Access request {request.id} received.")
    _report(request.id, run_request(request.id))


@privacy.command(name="run")
@click.argument("request_id")
@local_vendors_option
@vendor_port_option()
def run_again(request_id: str, local_vendors: bool, port: int) -> None:
    """Run (again) the job of an open request."""
    from privacy.subject_requests import register

    try:
        request = register(settings()).get(request_id)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if not request.is_open:
        raise click.ClickException(f"{request_id} is already done ({request.completed_at})")
    needs_vendors = request.kind == "erasure" and local_vendors
    _report(request_id, _run_with_vendors(request_id, port, needs_vendors))


@privacy.command()
def requests() -> None:
    """Every request, its age and where it stands."""
    from privacy.subject_requests import register

    now = datetime.now(UTC)
    found = register(settings()).all()
    if not found:
        click.echo("No data-subject requests.")
    for r in found:
        hours = r.age(now).total_seconds() / 3600
        late = " LATE" if r.is_open and hours >= 48 else ""
        click.echo(f"{r.id}  {r.kind:<8} {r.status:<6} received {r.received_at} ({hours:.0f} h){late}  owner {r.owner}")


@privacy.command()
def deadlines() -> None:
    """Alert the owners of requests open 48 hours, escalate at 60 (as the Dagster sensor does)."""
    from orchestration.resources import alerts_from_env
    from privacy.requests import RequestRegister, sla_conditions
    from quality.alert_conditions import dispatch

    alerts = alerts_from_env()
    done = dispatch(sla_conditions(RequestRegister(settings().privacy_dir)), alerts.store(), alerts.channels())
    for alert in done.raised:
        click.echo(f"{alert.severity}: {alert.dataset}: {alert.what} -> {alert.owner}")
    click.echo(f"deadlines: {done.describe()}")


@privacy.command()
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="The day retention is judged on (default: the settings' as-of date, else today).",
)
@click.option(
    "--policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Another retention policy file (default: privacy/retention.yml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome (counts only) as one JSON object.")
def retention(as_of, policy: Path | None, as_json: bool) -> None:
    """Anonymise the personal data its declared retention has expired, and verify it is gone
    (the Dagster job `retention_job`, as the weekly schedule runs it)."""
    import dagster as dg

    from orchestration import definitions
    from orchestration.run_recovery import PID_TAG, instance_for_terminal

    cfg = settings()
    day = as_of.date() if as_of else cfg.as_of
    run_config: dict = {
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
        "resources": {
            "warehouse": {
                "config": {
                    "path": str(cfg.warehouse),
                    "reports_dir": str(cfg.reports_dir),
                    "as_of": day.isoformat() if day else None,
                    "target": cfg.warehouse_target,
                }
            }
        },
    }
    if policy is not None:
        run_config["ops"] = {"find_expired_data": {"config": {"policy": str(policy)}}}
    with dg.execute_job(
        dg.reconstructable(definitions.retention_job_definition),
        instance_for_terminal(),
        run_config=run_config,
        tags={PID_TAG: str(os.getpid())},
    ) as result:
        if not result.success:
            raise click.ClickException(f"retention: {step_failure(result)} (Dagster run {result.run_id})")
        outcome = result.output_for_node("anonymise_expired_data")
    if as_json:
        click.echo(json.dumps({"run_id": result.run_id, "success": True, "outcome": outcome}, default=str))
        return
    rules = outcome.get("rules", {})
    click.echo(f"retention: done in Dagster run {result.run_id}")
    for name, what in rules.items():
        click.echo(f"  {name}: {what}")
    if "verified" in outcome:
        click.echo(f"  verified: {outcome['verified'].get('found', 0)} occurrence(s) left")


@privacy.command()
@click.option("--email", "emails", multiple=True, metavar="EMAIL", help="An email to look for (repeatable).")
@click.option("--name", "names", multiple=True, metavar="NAME", help="A full name to look for (repeatable).")
@click.option("--id", "ids", multiple=True, metavar="ID", help="An id to look for, as a whole token (repeatable).")
def scan(emails, names, ids) -> None:
    """Look for a person in every store: every table of every schema, the warehouse file's bytes
    and every folder the pipeline writes (what an erasure's verification runs). Exit 1 when found."""
    from privacy.scan import scan as scan_stores

    _warehouse_required()
    words = sorted({e.strip().lower() for e in emails} | {n.strip().lower() for n in names})
    if not words and not ids:
        raise click.UsageError("give an --email, a --name or an --id to look for")
    findings = scan_stores(settings(), words, sorted(set(ids)))
    for finding in findings:
        click.echo(finding.describe())
    click.echo(f"found in {len(findings)} place(s)" if findings else "found nowhere")
    if findings:
        raise SystemExit(1)
