"""The alerts sensor: announce every change of state of a quality condition, once.

Conditions are read from the Dagster instance only (the warehouse may be locked by a run):
the latest audit of each entity (its blocking checks and data freshness, in the audit's
metadata), the latest source-monitor checks (volume, schema drift), the steps and runs that
failed or died (`failure_alerts`), and the freshness daemon's state of every asset with a
freshness policy. `quality.alert_conditions.dispatch` decides
what changed and delivers it to the configured channels.
"""

import dagster as dg

from expectations.suites import SUITES
from orchestration.failure_alerts import run_conditions
from orchestration.freshness_policies import window_of
from orchestration.resources import AlertsResource
from quality.alert_conditions import Condition, Dispatch, dispatch, load_freshness_condition

_FRESHNESS_STATE = {"PASS": "ok", "WARN": "warn", "FAIL": "fail"}


def collect_conditions(instance: dg.DagsterInstance, asset_graph, load_freshness: bool = True) -> list[Condition]:
    conditions: dict[str, Condition] = {}

    def add(payload) -> None:
        for data in payload or []:
            condition = Condition.from_json(data)
            conditions[condition.key] = condition

    # Audits carry their checks' conditions, raw assets the landing files they set aside.
    raw = [node.key for node in asset_graph.asset_nodes if node.group_name == "ingestion"]
    for key in [*(dg.AssetKey(["audit", entity]) for entity in SUITES), *raw]:
        event = instance.get_latest_materialization_event(key)
        if event and event.asset_materialization:
            entry = event.asset_materialization.metadata.get("alert_conditions")
            add(entry.value if entry else None)

    check_keys = [
        key for node in asset_graph.asset_nodes for key in node.check_keys if key.name in ("volume", "schema_drift")
    ]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    for record in latest.values():
        evaluation = record.evaluation if record else None
        # A check a failed run only planned has no evaluation to read (and no metadata).
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            entry = evaluation.metadata.get("alert_conditions")
            add(entry.value if entry else None)

    for condition in run_conditions(instance):
        conditions[condition.key] = condition

    if not load_freshness:
        return list(conditions.values())
    with_policy = {node.key: window_of(node.key) for node in asset_graph.asset_nodes if node.freshness_policy}
    records = instance.get_freshness_state_records([k for k, w in with_policy.items() if w])
    for key, record in records.items():
        state = _FRESHNESS_STATE.get(record.freshness_state.value)
        if state is None:  # UNKNOWN (never loaded) or not applicable: nothing to say yet
            continue
        condition = load_freshness_condition(key.to_user_string(), with_policy[key], state, record.updated_at)
        conditions[condition.key] = condition
    return list(conditions.values())


def dispatch_alerts(
    instance: dg.DagsterInstance, asset_graph, alerts: AlertsResource, load_freshness: bool = True
) -> Dispatch:
    """Announce what changed and deliver what is owed from earlier dispatches.
    `load_freshness=False` leaves out Dagster's freshness states, which only the freshness
    daemon of `dagster dev` keeps current."""
    return dispatch(collect_conditions(instance, asset_graph, load_freshness), alerts.store(), alerts.channels())


@dg.sensor(
    name="quality_alerts_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert when a blocking check fails, data or a load goes stale, a raw table's volume "
    "jumps or a source's schema changes, and a resolved message when it recovers (JSONL log, "
    "webhook, Slack).",
)
def quality_alerts_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    graph = context.repository_def.asset_graph
    done = dispatch_alerts(context.instance, graph, alerts)
    for alert in done.raised:
        context.log.info(f"{alert.status}: {alert.dataset}: {alert.what}")
    if done.owed:
        context.log.warning(f"Alerts owed: {done.describe()}")
    worked = done.raised or done.owed or any(d.delivered or d.set_aside for d in done.delivery.values())
    return dg.SkipReason(f"alerts: {done.describe()}" if worked else "no change in any quality condition")
