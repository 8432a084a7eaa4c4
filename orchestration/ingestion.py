"""Ingestion assets: one dlt asset group per source system, loading raw schemas in DuckDB."""

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.pipeline.exceptions import PipelineStepFailed

from connectors import contract, quarantine
from connectors.http import explain
from connectors.pipelines import (
    DATASETS,
    discard_loaded_files,
    finish,
    make_pipeline,
    make_source,
    placeholder_source,
)
from connectors.usage_events import rejected_dir, rejected_files
from data_spine.settings import settings
from data_spine.warehouse import Warehouse
from expectations.freshness_windows import SOURCES
from orchestration.freshness_policies import how_judged, source_policy
from orchestration.resources import VendorApisResource, exclusive_pool, retry_when_locked, warehouse_locked
from privacy import suppression
from privacy.classification import column_tags, raw_table_classification, strictest
from privacy.keys import privacy_key
from quality.alert_conditions import OK, rejected_file_condition


@dataclass
class RawTableTranslator(DagsterDltTranslator):
    """Key raw tables as `<source>/<table>`, the same keys dbt gives its sources."""

    source: str = ""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        source = self.source
        return spec.replace_attributes(
            key=dg.AssetKey([source, data.resource.name]),
            deps=[],
            group_name="ingestion",
            freshness_policy=source_policy(source),
            kinds={"dlt", Warehouse.of(settings()).target},
            description=f"Raw `{data.resource.name}` from {source}, loaded by dlt into `{DATASETS[source]}`."
            + how_judged(SOURCES[source]),
            metadata={**spec.metadata, **classified_raw_table(source, data.resource.name)},
        )


def classified_raw_table(source: str, name: str) -> dict:
    """A raw table's columns as its contract declares them (and dlt's), each tagged with its
    classification, and the strictest class of what the resource loads: its table, the child
    tables beside it (`<table>__<list>`) and the columns their contracts classify besides."""
    declared = contract.table(source, name)
    if declared is None:
        return {}
    classes = raw_table_classification(source, name)
    columns = [
        dg.TableColumn(
            name=c.name, type=contract.SQL[c.data_type], description=c.description, tags=column_tags(c.classification)
        )
        for c in declared.columns.values()
    ] + [
        dg.TableColumn(
            name=c,
            type=contract.SQL[t],
            description="dlt's id of the load that wrote the row.",
            tags=column_tags(classes[c]),
        )
        for c, t in contract.DLT_COLUMNS.items()
    ]
    tables = [t for t in contract.contract(source) if t == name or t.startswith(f"{name}__")]
    level = strictest(c for t in tables for c in raw_table_classification(source, t).values())
    return {"dagster/column_schema": dg.TableSchema(columns=columns), **({"classification": level} if level else {})}


def _ingestion_assets(source: str) -> dg.AssetsDefinition:
    # The definition only needs the source's shape (its resources); credentials are resolved
    # when a run starts, so the code location loads on machines without them.
    @dlt_assets(
        dlt_source=placeholder_source(source),
        dlt_pipeline=make_pipeline(source),
        name=f"ingest_{source}",
        dagster_dlt_translator=RawTableTranslator(source=source),
        pool=exclusive_pool(f"load_{source}"),
    )
    def _assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource, vendor_apis: VendorApisResource):
        context.log.info(f"Loading {source} into {DATASETS[source]} ...")
        started = datetime.now(UTC)
        pipeline = make_pipeline(source)
        try:
            results = list(
                dlt.run(
                    context=context,
                    dlt_source=make_source(source, **vendor_apis.overrides(source)),
                    dlt_pipeline=pipeline,
                )
            )
            finish(source, pipeline)
            suppressed = _suppress(source, started)
            discard_loaded_files(pipeline)
        except PipelineStepFailed as exc:
            if warehouse_locked(exc):
                raise retry_when_locked(context) from exc
            raise explain(exc) or exc from exc
        # Rows set aside at the edge, per resource, in this run and in all: shown on each asset.
        this_run = quarantine.counts(pipeline, pipeline.last_trace.last_load_info.loads_ids)
        in_all = quarantine.counts(pipeline)
        for resource, n in this_run.items():
            context.log.warning(f"{source}.{resource}: {n} record(s) quarantined in {DATASETS[source]}.quarantine")
        for result in results:
            resource = result.asset_key.path[-1]
            extra = _landing_metadata(context, result.asset_key) if source == "usage_events" else {}
            yield dg.MaterializeResult(
                asset_key=result.asset_key,
                metadata={
                    **(result.metadata or {}),
                    "quarantined_this_run": this_run.get(resource, 0),
                    "quarantined_total": in_all.get(resource, 0),
                    "suppressed_rows": suppressed,
                    **extra,
                },
            )

    return _assets


def _suppress(source: str, started: datetime) -> int:
    """Erased people whom this step's loads brought back are anonymised again before any model
    reads them (`privacy.suppression`); rows changed."""
    schema = DATASETS[source]
    with Warehouse.of(settings()).connect() as con:
        loads = [
            load_id
            for (load_id,) in con.execute(
                f"SELECT load_id FROM {schema}._dlt_loads WHERE inserted_at >= ?", [started]
            ).fetchall()
        ]
        if not loads:
            return 0
        return sum(suppression.apply(con, schema, privacy_key(settings()), loads).values())


def _landing_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict:
    """The landing files set aside as unreadable, as alert conditions the alerts read back: one
    per file while it is in the rejected folder, and a resolved one when it has left it (the
    asset's previous materialization remembers what was announced)."""

    landing = settings().landing_dir
    conditions = {}
    for f in rejected_files(landing):
        context.log.warning(f"usage_events: {f.name} set aside in {f.path.parent}: {f.reason}")
        conditions[f.name] = rejected_file_condition("usage_events", f.name, f.reason, str(f.path), f.set_aside_at)
    previous = context.instance.get_latest_materialization_event(key)
    entry = previous.asset_materialization.metadata.get("alert_conditions") if previous else None
    for data in entry.value if entry else []:
        details = data.get("details", {})
        name = details.get("file")
        if data.get("kind") == "rejected_file" and data.get("state") != OK and name not in conditions:
            conditions[name] = rejected_file_condition(
                "usage_events", name, details.get("reason", ""), details.get("set_aside_in", ""), state=OK
            )
    return {
        "rejected_files": len([c for c in conditions.values() if c.firing]),
        "rejected_folder": str(rejected_dir(landing)),
        "alert_conditions": dg.MetadataValue.json([c.to_json() for c in conditions.values()]),
    }


ingestion_assets = [_ingestion_assets(source) for source in DATASETS]
