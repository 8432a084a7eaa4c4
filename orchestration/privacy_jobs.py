"""Data-subject requests and retention as Dagster jobs.

A run is given the request's id only (run config `ops: {<op>: {config: {request_id}}}` through
the `request` resource): the person's identifiers never enter run config, logs or event
storage; each step reads them from the request's pending file (`privacy.requests`). Steps that
fail are retried (a vendor that is down, a warehouse another process holds); a request whose
run failed stays open, and its deadline alert fires if nobody finishes it.
"""

import dagster as dg

from data_spine.settings import settings
from data_spine.warehouse import Warehouse, duckdb_only
from orchestration.resources import WAREHOUSE_POOL, AlertsResource, VendorApisResource, waiting_for_the_warehouse
from privacy import subject_requests as steps
from privacy.access import publish_role_access
from privacy.requests import RequestRegister, sla_conditions
from quality.alert_conditions import dispatch

RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)


class SubjectRequestResource(dg.ConfigurableResource):
    """Which request a run works on."""

    request_id: str = ""


def _ran(context: dg.OpExecutionContext, what: dict | list) -> None:
    context.add_output_metadata({"outcome": dg.MetadataValue.json(what)})


@dg.op(pool=WAREHOUSE_POOL, retry_policy=RETRY, description="Find the person in the raw tables, once.")
def resolve_subject(context: dg.OpExecutionContext, request: SubjectRequestResource) -> dict:
    cfg = settings()
    if problem := duckdb_only(Warehouse.of(cfg), "A data-subject request"):
        raise dg.Failure(problem, allow_retries=False)
    if not cfg.warehouse.exists():
        raise dg.Failure(f"no warehouse at {cfg.warehouse} yet: run `spine run` first", allow_retries=False)
    try:
        steps.register(cfg).get(request.request_id)
    except KeyError as exc:
        raise dg.Failure(str(exc.args[0]), allow_retries=False) from None
    with waiting_for_the_warehouse(context):
        found = steps.resolve_step(settings(), request.request_id)
    context.log.info(f"{request.request_id}: found {found}")
    return found


@dg.op(retry_policy=RETRY, description="Ask HubSpot, Zendesk and Stripe to delete the person through their own APIs.")
def erase_at_sources(
    context: dg.OpExecutionContext, found: dict, request: SubjectRequestResource, vendor_apis: VendorApisResource
) -> list:
    overrides = {source: vendor_apis.overrides(source) for source in ("hubspot", "zendesk", "stripe")}
    calls = steps.at_sources(settings(), request.request_id, overrides)
    for call in calls:
        context.log.info(f"{call['system']}: {call['action']} of {call['object']}: {call['status']}")
    return calls


@dg.op(pool=WAREHOUSE_POOL, retry_policy=RETRY, description="Anonymise the person in every store; suppress them.")
def erase_in_warehouse(context: dg.OpExecutionContext, found: dict, request: SubjectRequestResource) -> list:
    with waiting_for_the_warehouse(context):
        touched = steps.in_warehouse(settings(), request.request_id)
    context.log.info(f"{request.request_id}: {len(touched)} places changed")
    return touched


@dg.op(pool=WAREHOUSE_POOL, retry_policy=RETRY, description="Rebuild what each role may read, without the person.")
def rebuild_role_access(context: dg.OpExecutionContext, touched: list) -> dict:
    cfg = settings()
    with waiting_for_the_warehouse(context):
        return publish_role_access(cfg.warehouse, cfg.data_dir, cfg)


# Not retried: what it finds stays found until the erasure runs again (`spine privacy run`).
@dg.op(
    pool=WAREHOUSE_POOL,
    description="Scan every store for the person's emails, names and ids; fail while anything is found.",
)
def verify_erasure(context: dg.OpExecutionContext, calls: list, roles: dict, request: SubjectRequestResource) -> dict:
    with waiting_for_the_warehouse(context):
        return steps.verify(settings(), request.request_id)


@dg.op(pool=WAREHOUSE_POOL, description="Write every record about the person, by layer, as JSON and CSV.")
def export_subject(context: dg.OpExecutionContext, found: dict, request: SubjectRequestResource) -> dict:
    with waiting_for_the_warehouse(context):
        summary = steps.access(settings(), request.request_id)
    _ran(context, summary)
    return summary


@dg.op(pool=WAREHOUSE_POOL, retry_policy=RETRY, description="Audit row (subject hash only); close the request.")
def complete_request(context: dg.OpExecutionContext, outcome: dict, request: SubjectRequestResource) -> None:
    with waiting_for_the_warehouse(context):
        done = steps.complete(settings(), request.request_id, context.run_id, [outcome])
    context.log.info(f"{done.id}: {done.kind} request done")


@dg.op(pool=WAREHOUSE_POOL, retry_policy=RETRY, description="Audit row (subject hash only); close the request.")
def complete_erasure(
    context: dg.OpExecutionContext, calls: list, touched: list, verified: dict, request: SubjectRequestResource
) -> None:
    with waiting_for_the_warehouse(context):
        done = steps.complete(
            settings(),
            request.request_id,
            context.run_id,
            [{"sources": calls}, {"stores": touched}, {"verified": verified}],
        )
    context.log.info(f"{done.id}: erasure done and verified")


@dg.job(description="A person's access/portability request: every record about them, as JSON and CSV.")
def subject_access_job():
    complete_request(export_subject(resolve_subject()))


@dg.job(
    description="A person's erasure request: deleted at the sources, anonymised in every store the project owns "
    "(aggregates kept), suppressed from later loads, verified by a scan, audited by hash."
)
def subject_erasure_job():
    found = resolve_subject()
    calls = erase_at_sources(found)
    touched = erase_in_warehouse(found)
    roles = rebuild_role_access(touched)
    verified = verify_erasure(calls, roles)
    complete_erasure(calls, touched, verified)


def request_config(request_id: str, log_level: str = "INFO") -> dict:
    return {
        "resources": {"request": {"config": {"request_id": request_id}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }


@dg.sensor(
    name="subject_request_deadline_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts the owner of a data-subject request still open 48 hours after it came, and escalates at 60.",
)
def subject_request_deadline_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    done = dispatch(sla_conditions(RequestRegister(settings().privacy_dir)), alerts.store(), alerts.channels())
    for alert in done.raised:
        context.log.info(f"{alert.status}: {alert.dataset}: {alert.what}")
    return dg.SkipReason(f"deadlines: {done.describe()}")
