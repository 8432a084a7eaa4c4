"""Report assets: what the served numbers say, written once publishing is done.

    audit/<revenue, customer, usage_event> ··· (after publish_<entity>, by priority) ··► revenue_report

The report reads `serving`, but it is not downstream of the serving assets: a held entity
fails its publishing step, and Dagster does not start a step whose upstream step produced
nothing, while a run that holds an entity back must still report from the version `serving`
kept. So, like the scorecard, it follows the audits of the entities it reads, and its lower
priority puts it behind their publishing steps, which are ready by then (the job runs one step
at a time).
"""

from pathlib import Path

import dagster as dg

from expectations.suites import SUITES
from orchestration.quality_assets import audit_key
from orchestration.resources import WAREHOUSE_POOL, WarehouseResource, waiting_for_the_warehouse
from reporting.revenue_report import ENTITIES, NothingServed, build_revenue_report


@dg.asset(
    key="revenue_report",
    deps=[audit_key(SUITES[entity]) for entity in ENTITIES],
    group_name="reports",
    kinds={"html", "json"},
    pool=WAREHOUSE_POOL,
    op_tags={"dagster/priority": "-1"},
    description="Revenue and customer report from the served tables: MRR, ARR, NRR, GRR and logo churn of the "
    "as-of month, the MRR and retention trends, the month's MRR bridge, customers by status, plan and health, "
    "the customers most at risk and feature adoption (revenue.html, revenue.json). Runs after the publishing "
    "steps and reads what they left in serving: a held entity's last good version.",
)
def revenue_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    reports = Path(warehouse.reports_dir)
    try:
        with waiting_for_the_warehouse(context):
            report = build_revenue_report(warehouse.warehouse, reports, warehouse.as_of_date())
    except NothingServed as exc:
        # Said in its own words: nothing went wrong in the code, there is nothing to report yet.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    headline = report["headline"]
    return dg.MaterializeResult(
        metadata={
            "as_of_month": report["month"] or "none",
            **{name: _number(headline[name]["value"]) for name in ("mrr", "arr", "nrr")},
            "html": dg.MetadataValue.path(str(reports / "revenue.html")),
            "json": dg.MetadataValue.path(str(reports / "revenue.json")),
        }
    )


def _number(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.null() if value is None else dg.MetadataValue.float(float(value))
