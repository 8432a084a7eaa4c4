"""Quality assets: Great Expectations suites as asset checks on the marts, and the scorecard."""

from pathlib import Path

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from expectations.suites import DIMENSIONS, SUITES, Suite
from orchestration.resources import WAREHOUSE_POOL, WarehouseResource
from orchestration.transformation import MART_KEYS, dbt_models


def _mart_key(suite: Suite) -> dg.AssetKey:
    return get_asset_key_for_model([dbt_models], suite.table.split(".")[-1])


def _suite_checks(suite: Suite) -> dg.AssetChecksDefinition:
    """One Dagster check per data-quality dimension the entity's suite covers."""
    key = _mart_key(suite)
    dimensions = [d for d in DIMENSIONS if any(c.dimension == d for c in suite.checks)]
    specs = [
        dg.AssetCheckSpec(
            name=f"gx_{dimension}",
            asset=key,
            # Blocking: downstream reports wait for the check; they are skipped only when a
            # check fails with ERROR severity, i.e. a blocking expectation failed.
            blocking=True,
            description=f"Great Expectations: {dimension} checks of the {suite.entity} suite.",
        )
        for dimension in dimensions
    ]

    @dg.multi_asset_check(specs=specs, name=f"gx_{suite.entity}", pool=WAREHOUSE_POOL)
    def _checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        from expectations.runner import validate_entity

        results = validate_entity(warehouse.file, suite.entity, run_id=context.run.run_id, as_of=warehouse.as_of_date())
        for dimension in dimensions:
            mine = [r for r in results if r.dimension == dimension]
            failed = [r for r in mine if not r.success]
            blocking = any(r.severity == "blocking" for r in failed)
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=f"gx_{dimension}",
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                metadata={
                    "expectations": len(mine),
                    "failed": len(failed),
                    "unexpected_rows": sum(r.unexpected_count for r in mine),
                    "failures": dg.MetadataValue.md(
                        "\n".join(f"- **{r.severity}** {r.description}: {r.unexpected_count} of {r.element_count}" for r in failed)
                        or "none"
                    ),
                },
            )

    return _checks


quality_checks = [_suite_checks(suite) for suite in SUITES.values()]


@dg.asset(
    key="scorecard",
    deps=MART_KEYS,
    group_name="reports",
    kinds={"html", "json"},
    pool=WAREHOUSE_POOL,
    description="Data-quality scorecard: per entity, a score per dimension and overall, with bands.",
)
def scorecard(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from expectations.scorecard import build_scorecard

    reports = Path(warehouse.reports_dir)
    try:
        card = build_scorecard(warehouse.file, reports, run_id=context.run_id)
    except LookupError:
        # The checks did not run in this run (the scorecard was materialized on its own):
        # score the latest validation run instead.
        card = build_scorecard(warehouse.file, reports)
    metadata: dict[str, object] = {
        "validation_run_id": card["run_id"],
        "html": dg.MetadataValue.path(str(reports / "scorecard.html")),
        "overall_score": dg.MetadataValue.float(float(card["overall"]["score"])),
    }
    for entity, body in card["entities"].items():
        metadata[f"{entity}/overall"] = dg.MetadataValue.float(float(body["overall"]["score"]))
        for dimension, dim in body["dimensions"].items():
            metadata[f"{entity}/{dimension}"] = dg.MetadataValue.float(float(dim["score"]))
    return dg.MaterializeResult(metadata=metadata)
