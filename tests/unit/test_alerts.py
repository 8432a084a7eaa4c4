"""Alerts: the real sensor, real HTTP deliveries to a local receiver, real dlt loads and DuckDB
files for the source monitors, and Dagster's own freshness evaluation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import dlt
import duckdb
import pytest

from orchestration.definitions import defs
from orchestration.resources import AlertsResource
from quality.alert_conditions import Condition, audit_conditions, drift_condition, volume_condition
from quality.source_monitors import VolumePolicy, detect_drift, measure_volumes

AUDIT = dg.AssetKey(["audit", "customer"])


class Receiver:
    """A local HTTP endpoint that records every POST and answers with the statuses it is given."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.statuses: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests.append((self.path, body))
                queue = receiver.statuses.get(self.path) or [200]
                status = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try again")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def posts(self, path: str) -> list[dict]:
        return [body for p, body in self.requests if p == path]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def alerts(tmp_path, receiver) -> AlertsResource:
    return AlertsResource(
        log_path=str(tmp_path / "alerts.jsonl"),
        webhook_url=receiver.url("/hook"),
        slack_webhook_url=receiver.url("/slack"),
        backoff_seconds=0.05,
        timeout_seconds=5,
    )


def _blocking_condition(state: str) -> Condition:
    return Condition(
        key="blocking_check:customer:customer_id_unique",
        kind="blocking_check",
        state=state,
        dataset="customer (customers)",
        what="blocking check failed: One row per customer",
        how_many="2 of 501 rows" if state != "ok" else "",
        since="2026-11-21T06:02:11Z" if state != "ok" else None,
        causes=("a join in the customers model multiplies rows",),
        owner="Data Engineering",
        action="Rebuild the marts.",
        details={"sample": [{"customer_id": "hubspot:10000005"}]},
    )


def _audit_reports(instance, *conditions: Condition) -> None:
    """What an audit of the customer entity leaves in Dagster for the sensor to read."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=AUDIT, metadata={"alert_conditions": dg.MetadataValue.json([c.to_json() for c in conditions])}
        )
    )


def _tick(instance, alerts: AlertsResource):
    sensor = defs.resolve_sensor_def("quality_alerts_sensor")
    return sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, resources={"alerts": alerts})
    )


def _log(alerts: AlertsResource) -> list[dict]:
    path = Path(alerts.log_path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_webhook_gets_the_alert_once_with_a_retry_after_a_500_and_the_resolved_message(alerts, receiver):
    receiver.statuses["/hook"] = [500, 200]
    with dg.instance_for_test() as instance:
        _audit_reports(instance, _blocking_condition("fail"))
        first = _tick(instance, alerts)
        for _ in range(3):  # the sensor evaluates again and again: nothing new to say
            again = _tick(instance, alerts)
            assert again.skip_message == "no change in any quality condition"
        assert first.skip_message == (
            "alerts: 1 raised; log delivered 1; webhook delivered 1; slack delivered 1; nothing owed"
        )

        hook = receiver.posts("/hook")
        assert len(hook) == 2 and hook[0] == hook[1]  # refused once with a 500, then delivered
        payload = hook[0]
        assert {
            k: payload[k]
            for k in (
                "source",
                "status",
                "kind",
                "severity",
                "state",
                "key",
                "dataset",
                "what",
                "how_many",
                "since",
                "owner",
            )
        } == {
            "source": "data-spine",
            "status": "firing",
            "kind": "blocking_check",
            "severity": "critical",
            "state": "fail",
            "key": "blocking_check:customer:customer_id_unique",
            "dataset": "customer (customers)",
            "what": "blocking check failed: One row per customer",
            "how_many": "2 of 501 rows",
            "since": "2026-11-21T06:02:11Z",
            "owner": "Data Engineering",
        }
        assert payload["likely_causes"] == ["a join in the customers model multiplies rows"]
        assert payload["suggested_action"] == "Rebuild the marts."
        assert "Since: 2026-11-21 06:02 UTC" in payload["text"] and payload["id"]
        [slack] = receiver.posts("/slack")
        assert slack["text"].startswith(":rotating_light: DATA QUALITY ALERT (CRITICAL): customer (customers)")
        assert "Owner: Data Engineering" in slack["attachments"][0]["text"]
        assert [(a["status"], a["key"]) for a in _log(alerts)] == [("firing", payload["key"])]

        _audit_reports(instance, _blocking_condition("ok"))
        assert _tick(instance, alerts).skip_message.startswith("alerts: 1 raised; log delivered 1;")
        assert _tick(instance, alerts).skip_message == "no change in any quality condition"
    resolved = receiver.posts("/hook")[2:]
    assert [(r["status"], r["severity"], r["since"], r["what"]) for r in resolved] == [
        ("resolved", "info", "2026-11-21T06:02:11Z", "blocking check failed: One row per customer")
    ]
    assert resolved[0]["text"].startswith("RESOLVED: customer (customers)")
    assert [a["status"] for a in _log(alerts)] == ["firing", "resolved"]
    assert len(receiver.posts("/slack")) == 2


def test_a_worse_state_fires_again_and_a_channel_that_is_down_is_caught_up_later(alerts, receiver):
    receiver.statuses["/hook"] = [503]  # down for every attempt of the first delivery
    window = Condition(
        key="data_freshness:source:usage_events",
        kind="data_freshness",
        state="warn",
        dataset="source usage_events",
        what="data older than its freshness window",
    )
    with dg.instance_for_test() as instance:
        _audit_reports(instance, window)
        _tick(instance, alerts)
        assert len(receiver.posts("/hook")) == 4  # max_attempts, all refused
        assert len(receiver.posts("/slack")) == 1 and len(_log(alerts)) == 1

        receiver.statuses["/hook"] = [200]
        _tick(instance, alerts)  # nothing changed, but the webhook is owed one alert
        assert len(receiver.posts("/hook")) == 5 and len(receiver.posts("/slack")) == 1 and len(_log(alerts)) == 1

        _audit_reports(instance, Condition(**{**window.__dict__, "state": "fail"}))
        _tick(instance, alerts)
        _tick(instance, alerts)
    states = [(b["status"], b["state"], b["severity"]) for b in receiver.posts("/hook")[-2:]]
    assert states == [("firing", "warn", "medium"), ("firing", "fail", "high")]


def test_a_stale_load_alerts_from_dagsters_own_freshness_evaluation(alerts, receiver):
    from dagster._core.loader import LoadingContextForTest
    from dagster._core.test_utils import freeze_time
    from dagster._daemon.freshness import FreshnessDaemon

    key = dg.AssetKey(["usage_events", "events"])  # warn after 6 h, fail after 26 h
    graph = defs.resolve_asset_graph()

    def freshness_daemon_tick(instance):
        async def evaluate():
            return await FreshnessDaemon()._evaluate_asset(context=LoadingContextForTest(instance), node=graph.get(key))

        asyncio.run(evaluate())

    with dg.instance_for_test() as instance:
        with freeze_time(time.time() - 30 * 3600):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
        freshness_daemon_tick(instance)
        assert instance.get_freshness_state_records([key])[key].freshness_state.value == "FAIL"
        _tick(instance, alerts)
        _tick(instance, alerts)
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
        freshness_daemon_tick(instance)
        _tick(instance, alerts)
    sent = [(a["status"], a["kind"], a["state"], a["dataset"]) for a in _log(alerts)]
    assert sent == [
        ("firing", "load_freshness", "fail", "source usage_events (Dagster asset usage_events/events)"),
        ("resolved", "load_freshness", "ok", "source usage_events (Dagster asset usage_events/events)"),
    ]


@pytest.fixture
def raw(tmp_path):
    pipeline = dlt.pipeline(
        pipeline_name="monitored",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="raw_things",
        pipelines_dir=str(tmp_path / "dlt"),
    )
    return pipeline, tmp_path / "w.duckdb"


def test_schema_drift_is_what_the_latest_load_added(raw):
    pipeline, warehouse = raw

    def load(rows):
        pipeline.run(rows, table_name="things", write_disposition="append")
        with duckdb.connect(str(warehouse)) as con:
            return detect_drift(con, "things_api", "raw_things", "run")

    assert not load([{"id": 1, "name": "a"}]).drifted  # the first load sets the schema
    assert not load([{"id": 2, "name": "b"}]).drifted
    drift = load([{"id": 3, "name": "c", "plan": "pro", "tags": ["x"]}])
    assert [(c.table, c.column, c.data_type, c.change) for c in drift.changes] == [
        ("things", "plan", "text", "new_column"),
        ("things__tags", None, None, "new_table"),
    ]
    condition = drift_condition(drift)
    assert condition.state == "warn" and "things.plan (text)" in condition.how_many
    retyped = load([{"id": "four", "name": "d"}])  # text where a number was: dlt keeps both
    assert [(c.column, c.change) for c in retyped.changes] == [("id__v_text", "type_variant")]
    assert not load([{"id": 5, "name": "e"}]).drifted  # same schema again: resolved
    with duckdb.connect(str(warehouse)) as con:
        recorded = con.execute("select change, count(*) from quality.schema_changes group by all order by 1").fetchall()
    assert recorded == [("new_column", 1), ("new_table", 1), ("type_variant", 1)]


def test_volume_anomaly_is_a_count_far_from_its_recent_average(raw):
    pipeline, warehouse = raw
    pipeline.run([{"id": i} for i in range(100)], table_name="things")
    policy = VolumePolicy(tolerance=0.5, window=7, min_readings=3)
    with duckdb.connect(str(warehouse)) as con:
        readings = [measure_volumes(con, "things_api", "raw_things", f"run{i}", policy)[0] for i in range(4)]
        assert [(r.rows, r.anomalous, r.average) for r in readings] == [
            (100, False, None),
            (100, False, None),
            (100, False, None),
            (100, False, 100.0),
        ]
        con.execute("delete from raw_things.things where id >= 40")
        [dropped] = measure_volumes(con, "things_api", "raw_things", "run5", policy)
    assert dropped.anomalous and dropped.rows == 40 and dropped.deviation == pytest.approx(-0.6)
    condition = volume_condition(dropped)
    assert condition.state == "fail" and condition.how_many.startswith("40 rows against an average of 100")


def test_audit_conditions_cover_every_blocking_check_and_judge_freshness_by_its_window():
    from datetime import datetime

    from expectations.suites import SUITES

    suite = SUITES["usage_event"]
    as_of = datetime(2026, 11, 21)

    def result(check, success, sample=()):
        return {
            "check_name": check.name,
            "success": success,
            "sample_unexpected": json.dumps(list(sample)),
            "table_name": "t",
            "run_id": "r",
            "as_of": as_of,
            "error": None,
            "unexpected_count": 0 if success else 2,
            "element_count": 10,
            "expectation": check.expectation,
            "observed_value": None,
        }

    stale = {
        "source_usage_events_fresh": [{"name": "source:usage_events", "age_hours": 10.0}],
        "mart_usage_events_fresh": [{"name": "mart:usage_events", "age_hours": 72.0}],
    }
    results = [
        result(c, c.name not in stale and c.name != "event_id_unique", stale.get(c.name, ())) for c in suite.checks
    ]
    conditions = {c.key: c for c in audit_conditions(suite, results, {"event_id_unique": datetime(2026, 11, 20)})}
    blocking = [c for c in suite.checks if c.severity == "blocking"]
    assert {k for k in conditions if k.startswith("blocking_check:")} == {
        f"blocking_check:usage_event:{c.name}" for c in blocking
    }
    assert conditions["blocking_check:usage_event:event_id_unique"].state == "fail"
    assert conditions["blocking_check:usage_event:event_id_unique"].since == "2026-11-20T00:00:00Z"
    assert conditions["data_freshness:source:usage_events"].state == "warn"  # 10 h: past 6, within 26
    assert conditions["data_freshness:mart:usage_events"].state == "fail"  # 72 h: past 50
    assert conditions["data_freshness:mart:feature_adoption_daily"].state == "ok"


def test_a_refused_delivery_is_set_aside_and_one_for_an_absent_channel_waits(alerts, receiver, tmp_path):
    """A 4xx will not succeed later: it is recorded, not retried forever. A delivery owed to a
    channel this process does not have (the sensor and `spine run` may be configured apart)
    waits for a process that has it."""
    state_file = Path(alerts.log_path).with_name("alert_state.json")
    receiver.statuses["/hook"] = [400]
    with dg.instance_for_test() as instance:
        _audit_reports(instance, _blocking_condition("fail"))
        _tick(instance, alerts)
        _tick(instance, alerts)
        assert len(receiver.posts("/hook")) == 1  # refused once, never asked again
        state = json.loads(state_file.read_text())
        [refused] = state["undeliverable"]
        assert refused["channel"] == "webhook" and "HTTP 400" in refused["error"]
        assert state["undelivered"] == []

        receiver.statuses["/hook"] = [503]  # down: the resolved message stays owed to it
        _audit_reports(instance, _blocking_condition("ok"))
        _tick(instance, alerts)
        assert [e["channels"] for e in json.loads(state_file.read_text())["undelivered"]] == [["webhook"]]
        _tick(instance, AlertsResource(log_path=alerts.log_path))  # a process without the webhook
        assert [e["channels"] for e in json.loads(state_file.read_text())["undelivered"]] == [["webhook"]]
        receiver.statuses["/hook"] = [200]
        _tick(instance, alerts)
    assert json.loads(state_file.read_text())["undelivered"] == []
    assert [b["status"] for b in receiver.posts("/hook")] == ["firing"] + ["resolved"] * 5  # 4 refused, 1 taken
    assert [b["text"].split(":")[1] for b in receiver.posts("/slack")] == ["rotating_light", "white_check_mark"]
    assert [a["status"] for a in _log(alerts)] == ["firing", "resolved"]


def test_an_improving_problem_is_announced_and_keeps_when_it_began(alerts, receiver):
    window = Condition(
        key="data_freshness:source:usage_events",
        kind="data_freshness",
        state="fail",
        dataset="source usage_events",
        what="data older than its freshness window",
        since="2026-11-20T01:50:00Z",
    )
    with dg.instance_for_test() as instance:
        _audit_reports(instance, window)
        _tick(instance, alerts)
        _audit_reports(instance, Condition(**{**window.__dict__, "state": "warn", "since": "2026-11-21T09:00:00Z"}))
        _tick(instance, alerts)
    assert [(a["state"], a["severity"], a["since"]) for a in _log(alerts)] == [
        ("fail", "high", "2026-11-20T01:50:00Z"),
        ("warn", "medium", "2026-11-20T01:50:00Z"),
    ]
