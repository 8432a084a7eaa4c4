"""Quality assets: write-audit-publish per entity, and the scorecard.

    marts/* (dbt: write) ──► audit/<entity> (Great Expectations: audit) ──► serving/<table> (publish)
                                   └──────────────────────────────────────► scorecard

An audit never fails on bad data: it records what it found (one Dagster check per quality
dimension, ERROR when a blocking expectation failed, scores as numeric metadata) so that the
scorecard is always written. The publishing step is the gate: it copies the entity's marts
into `serving` only if the audit passed every blocking check, and otherwise fails the run
loudly while consumers keep the last good version.
"""

from dataclasses import asdict
from pathlib import Path

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from data_spine.settings import settings
from data_spine.warehouse import Warehouse
from expectations.dialects import WAREHOUSE_ERRORS
from expectations.runner import WRITTEN_LAST, failing_since, validate_entity
from expectations.suite import Suite
from expectations.suites import SUITES
from orchestration.resources import (
    WAREHOUSE_POOL,
    AlertsResource,
    QualityResource,
    WarehouseResource,
    waiting_for_the_warehouse,
)
from orchestration.transformation import DbtBuildConfig, dbt_models
from quality.alert_conditions import audit_conditions
from quality.publishing import NotAudited, publish
from quality.scorecard import build_scorecard, entity_score
from reporting.figures import served_metadata

# Where the audited and served tables live, for the UI's kind tags (as the pool, fixed when the
# definitions load).
WAREHOUSE_KIND = Warehouse.of(settings()).target


def audit_key(suite: Suite) -> dg.AssetKey:
    return dg.AssetKey(["audit", suite.entity])


def _models_read(suite: Suite) -> list[dg.AssetKey]:
    return [get_asset_key_for_model([dbt_models], name) for name in suite.models_read]


def _audit(suite: Suite) -> dg.AssetsDefinition:
    @dg.asset(
        key=audit_key(suite),
        deps=_models_read(suite),
        group_name="audit",
        kinds={"great_expectations", WAREHOUSE_KIND},
        pool=WAREHOUSE_POOL,
        description=f"Audit of the {suite.entity} entity: its Great Expectations suite, run inside the warehouse on "
        f"the freshly built marts ({', '.join(suite.publishes)}). {suite.description}",
        check_specs=[
            dg.AssetCheckSpec(
                name=dim,
                asset=audit_key(suite),
                description=f"{dim.capitalize()} checks of the {suite.entity} suite; ERROR when a blocking one fails.",
            )
            for dim in suite.dimensions
        ],
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource, quality: QualityResource):
        # An event-grain mart is audited where it changed, like its dbt tests, except on the
        # runs that check the whole history (a full refresh, the Sunday run).
        whole_history = DbtBuildConfig.of_run(context.run.run_config).whole_history
        with waiting_for_the_warehouse(context):
            results = validate_entity(
                warehouse.warehouse,
                suite.entity,
                run_id=context.run.run_id,
                as_of=warehouse.as_of_instant(),
                settings=quality.duckdb_settings(),
                whole_history=whole_history,
                reports_dir=Path(warehouse.reports_dir),
            )
            with warehouse.connect(read_only=True) as con:
                since = failing_since(con, results)
        conditions = audit_conditions(suite, results, {c: at for (_, c), at in since.items()})
        rows = [asdict(r) for r in results]
        overall, dimensions = entity_score(rows)
        failed = [r for r in results if not r.success]
        blocking = [r for r in failed if r.severity == "blocking"]
        for r in blocking:
            context.log.error(
                f"{suite.entity}: blocking check {r.check_name} failed: {r.description} "
                f"({r.unexpected_count:,} of {r.element_count:,}{_of_which(r.rows_checked)})"
                f"{' - ' + r.error if r.error else ''}"
            )
        for dim in suite.dimensions:
            mine = [r for r in results if r.dimension == dim]
            bad = [r for r in mine if not r.success]
            yield dg.AssetCheckResult(
                check_name=dim,
                passed=not bad,
                severity=dg.AssetCheckSeverity.ERROR
                if any(r.severity == "blocking" for r in bad)
                else dg.AssetCheckSeverity.WARN,
                metadata={
                    "score": dg.MetadataValue.float(dimensions[dim]["score"]),
                    "checks": len(mine),
                    "failed": len(bad),
                    "failures": dg.MetadataValue.md(
                        "\n".join(
                            f"- **{r.severity}** `{r.check_name}`: {r.description} - {r.unexpected_count:,} of "
                            f"{r.element_count:,}{_of_which(r.rows_checked)}"
                            for r in bad
                        )
                        or "none"
                    ),
                },
            )
        yield dg.MaterializeResult(
            metadata={
                "score/overall": dg.MetadataValue.float(overall),
                **{f"score/{dim}": dg.MetadataValue.float(d["score"]) for dim, d in dimensions.items()},
                "checks": len(results),
                "failed": len(failed),
                "blocking_failed": len(blocking),
                "rows_checked": "rows written last" if suite.sliced(whole_history) else "every row",
                "as_of": warehouse.as_of_instant().isoformat(timespec="seconds"),
                # Read back by the alerts sensor, which never opens the warehouse.
                "alert_conditions": dg.MetadataValue.json([c.to_json() for c in conditions]),
            }
        )

    return _asset


def _of_which(rows_checked: str) -> str:
    return " rows written last" if rows_checked == WRITTEN_LAST else ""


def _publish(suite: Suite) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            ["serving", table],
            deps=[audit_key(suite), get_asset_key_for_model([dbt_models], table)],
            group_name="serving",
            kinds={WAREHOUSE_KIND},
            description=f"`serving.{table}`: what consumers read. A copy of `marts.{table}` taken when the "
            f"{suite.entity} audit passed every blocking check; held at the last good version otherwise.",
        )
        for table in suite.publishes
    ]

    # Selectable one table at a time (the UI offers each), though an entity is published whole:
    # every table of it, in one transaction, or none.
    @dg.multi_asset(specs=specs, name=f"publish_{suite.entity}", pool=WAREHOUSE_POOL, can_subset=True)
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        try:
            # A re-execution of a failed run continues its parent's run: its audit counts.
            earlier = tuple(r for r in (context.run.parent_run_id, context.run.root_run_id) if r)
            with waiting_for_the_warehouse(context):
                decision = publish(warehouse.warehouse, suite, context.run.run_id, audit_runs=earlier)
        except NotAudited as exc:
            raise dg.Failure(str(exc)) from exc
        if not decision.published:
            context.log.error(decision.describe())
            raise dg.Failure(
                description=decision.describe(),
                metadata={
                    "reason": decision.reason,
                    "blocking_failures": decision.blocking_failures,
                    "serving_run_id": decision.serving_run_id or "none",
                },
                allow_retries=False,
            )
        context.log.info(decision.describe())
        tables = [t for t in decision.row_counts if dg.AssetKey(["serving", t]) in context.selected_asset_keys]
        try:
            with waiting_for_the_warehouse(context):
                shown = _served_figures(warehouse, suite.entity, tables)
        except WAREHOUSE_ERRORS as exc:
            # Published is published: the figures are a view of it, never a reason to fail it.
            context.log.warning(f"{suite.entity}: published, but its figures could not be read: {exc}")
            shown = {table: {} for table in tables}
        for table in tables:
            yield dg.MaterializeResult(
                asset_key=["serving", table],
                metadata={
                    "dagster/row_count": decision.row_counts[table],
                    "published_from_run": decision.run_id,
                    "written": decision.written.get(table, "copied"),
                    "table": f"serving.{table}",
                    **shown[table],
                },
            )

    return _asset


def _served_figures(warehouse: WarehouseResource, entity: str, tables: list[str]) -> dict[str, dict]:
    """Per served table, the figures a person checks (numeric, so the UI plots them over runs)
    and a Markdown preview of its first rows, personal data masked."""
    as_of = warehouse.as_of_date()
    with warehouse.connect() as con:
        served = served_metadata(con, entity, tables, as_of)
    return {
        table: {
            **{name: _number(value) for name, value in shown.items() if name != "preview"},
            "as_of": as_of.isoformat(),
            "preview": dg.MetadataValue.md(shown["preview"]),
        }
        for table, shown in served.items()
    }


def _number(value: int | float) -> dg.MetadataValue:
    return dg.MetadataValue.int(value) if isinstance(value, int) else dg.MetadataValue.float(value)


audit_assets = [_audit(suite) for suite in SUITES.values()]
publish_assets = [_publish(suite) for suite in SUITES.values()]


@dg.asset(
    key="scorecard",
    deps=[audit_key(suite) for suite in SUITES.values()],
    group_name="reports",
    kinds={"html", "json"},
    pool=WAREHOUSE_POOL,
    # Not downstream of publishing (a held entity fails its step, and the scorecard must still
    # be written), so it waits its turn behind the publishing steps by priority instead.
    op_tags={"dagster/priority": "-1"},
    description="Data-quality scorecard: per entity a score per dimension and overall with bands, the trend "
    "over past runs, failing checks with samples, publication status and alerts "
    "(scorecard.html, .json, .md).",
)
def scorecard(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.MaterializeResult:
    reports = Path(warehouse.reports_dir)
    # This run's alerts are dispatched after the scorecard: it shows what earlier ones left owed.
    delivery = alerts.store().delivery(c.name for c in alerts.channels())
    with waiting_for_the_warehouse(context):
        card = build_scorecard(warehouse.warehouse, reports, delivery)
    metadata: dict[str, object] = {
        "html": dg.MetadataValue.path(str(reports / "scorecard.html")),
        "markdown": dg.MetadataValue.path(str(reports / "scorecard.md")),
        "overall_score": dg.MetadataValue.float(float(card["overall"]["score"])),
        "alerts_firing": len(card["alerts"]),
        "alert_deliveries_owed": card["alert_delivery"]["owed"],
    }
    for entity, body in card["entities"].items():
        metadata[f"{entity}/overall"] = dg.MetadataValue.float(float(body["overall"]["score"]))
        for dimension, dim in body["dimensions"].items():
            metadata[f"{entity}/{dimension}"] = dg.MetadataValue.float(float(dim["score"]))
    return dg.MaterializeResult(metadata=metadata)
