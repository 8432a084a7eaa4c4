"""Source monitors: after each load, a volume check, a schema-drift check and a type check on
every raw asset."""

from collections import defaultdict

import dagster as dg

from connectors.pipelines import DATASETS
from orchestration.ingestion import ingestion_assets
from orchestration.resources import WAREHOUSE_POOL, QualityResource, WarehouseResource, waiting_for_the_warehouse
from quality.alert_conditions import drift_condition, volume_condition
from quality.source_monitors import detect_drift, loaded_by, measure_volumes, raw_tables, type_misfits


def _monitor(source: str, keys: list[dg.AssetKey]) -> dg.AssetChecksDefinition:
    specs = [
        spec
        for key in keys
        for spec in (
            dg.AssetCheckSpec(
                "volume", asset=key, description="Row count within its tolerance of the average of recent loads."
            ),
            dg.AssetCheckSpec(
                "schema_drift", asset=key, description="The latest load brought no new table, column or column type."
            ),
            dg.AssetCheckSpec(
                "types",
                asset=key,
                description="Every value fits the type its raw contract declares (a value that does "
                "not is kept as text in `<column>__v_text`, its column left null).",
            ),
        )
    ]

    # Subsettable: the UI materializes any raw asset alone, with only its own checks selected.
    @dg.multi_asset_check(specs=specs, name=f"monitor_{source}", pool=WAREHOUSE_POOL, can_subset=True)
    def _checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource):
        selected = context.selected_asset_check_keys
        counted = {k.asset_key for k in selected if k.name == "volume"}
        watched = {k.asset_key for k in selected if k.name == "schema_drift"}
        typed = {k.asset_key for k in selected if k.name == "types"}
        dataset = DATASETS[source]
        readings, drift, misfits = [], None, []
        with waiting_for_the_warehouse(context), warehouse.connect() as con:
            resources = loaded_by(con, dataset)

            def asset_of(table: str) -> dg.AssetKey:
                # A raw table belongs to the asset of the dlt resource that loads it: a nested
                # table (`subscriptions__items__data`) to its root's. Tables are named bare or
                # as `<raw schema>.<table>`.
                name = table.removeprefix(f"{dataset}.")
                return dg.AssetKey([source, resources.get(name, name)])

            tables = raw_tables(con, dataset)
            if typed:
                misfits = type_misfits(con, dataset, [t for t in tables if asset_of(t) in typed])
            if counted:
                mine = [t for t in tables if asset_of(t) in counted]
                readings = measure_volumes(con, source, dataset, context.run.run_id, quality.volume_policy(), mine)
            if watched:
                drift = detect_drift(con, source, dataset, context.run.run_id, declared=[k.path[-1] for k in keys])
        volumes = defaultdict(list)
        for reading in readings:
            volumes[asset_of(reading.table)].append(reading)
        for key in sorted(counted, key=str):
            mine = volumes.get(key, [])
            anomalous = [r for r in mine if r.anomalous]
            for r in anomalous:
                context.log.warning(f"{r.table}: {r.rows:,} rows, average {r.average:,.0f} ({r.deviation:+.0%})")
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="volume",
                passed=not anomalous,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    **{f"rows/{r.table}": r.rows for r in mine},
                    "alert_conditions": dg.MetadataValue.json([volume_condition(r).to_json() for r in mine]),
                },
            )
        for key in sorted(typed, key=str):
            mine = [m for m in misfits if asset_of(m.table) == key]
            for m in mine:
                context.log.warning(
                    f"{m.table}.{m.column}: {m.rows:,} value(s) of another type kept in "
                    f"{m.column}__v_text, e.g. {m.sample[0]}"
                )
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="types",
                passed=not mine,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "records": sum(m.rows for m in mine),
                    **{f"misfits/{m.table}.{m.column}": m.rows for m in mine},
                    "samples": dg.MetadataValue.json({f"{m.table}.{m.column}": m.sample for m in mine}),
                },
            )
        if drift is None:
            return
        changes = defaultdict(list)
        for change in drift.changes:
            changes[asset_of(change.table)].append(change)
        drift_alert = drift_condition(drift).to_json()
        for key in sorted(watched, key=str):
            drifted = changes.get(key, [])
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="schema_drift",
                passed=not drifted,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "changes": dg.MetadataValue.md(
                        "\n".join(
                            f"- {c.change}: `{c.table}`" + (f" `{c.column}` ({c.data_type})" if c.column else "")
                            for c in drifted
                        )
                        or "none"
                    ),
                    "load_id": drift.load_id or "none",
                    "alert_conditions": dg.MetadataValue.json([drift_alert]),
                },
            )

    return _checks


source_monitors = [
    _monitor(assets_def.node_def.name.removeprefix("ingest_"), sorted(assets_def.keys, key=str))
    for assets_def in ingestion_assets
]
