"""The deadline of a data-subject request: 48 hours open alerts its owner once, 60 escalates,
done resolves; through `spine privacy deadlines` and the Dagster sensor, into the alert log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from click.testing import CliRunner

from command_line.main import main
from data_spine.settings import settings
from orchestration.definitions import defs
from orchestration.resources import AlertsResource
from privacy.requests import RequestRegister
from privacy.subject_requests import receive


def _alerts(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_request_open_past_48_hours_raises_one_alert_and_60_escalates(tmp_path, set_env):
    set_env(SPINE_DATA_DIR=str(tmp_path / "data"), SPINE_PRIVACY_KEY="test-key")
    log = settings().alerting.log_path
    now = datetime.now(UTC)
    late = receive(settings(), "erasure", ["Jane.Doe@Customer.io"], received_at=now - timedelta(hours=49))
    receive(settings(), "access", ["someone@else.io"], received_at=now - timedelta(hours=3))

    runner = CliRunner()
    for _ in range(2):  # evaluating the same state again announces nothing
        done = runner.invoke(main, ["privacy", "deadlines"])
        assert done.exit_code == 0, done.output
    alerts = _alerts(log)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["kind"] == "dsr_sla" and alert["status"] == "firing"
    assert alert["severity"] == "high" and alert["owner"] == "Data Protection Officer"
    assert late.id in alert["dataset"] and "49 hours" in alert["what"]
    assert "jane" not in json.dumps(alert).lower(), "an alert never names the person"

    # Past 60 hours: escalated once, to Legal, as critical.
    register = RequestRegister(settings().privacy_dir)
    register.update(late.id, received_at=(now - timedelta(hours=61)).isoformat())
    runner.invoke(main, ["privacy", "deadlines"])
    escalation = _alerts(log)[1:]
    assert [(a["severity"], a["owner"], a["state"]) for a in escalation] == [("critical", "Legal", "fail")]

    # Done: resolved, and nothing more after.
    register.complete(late.id, run_id="test", steps=[])
    runner.invoke(main, ["privacy", "deadlines"])
    runner.invoke(main, ["privacy", "deadlines"])
    assert [a["status"] for a in _alerts(log)] == ["firing", "firing", "resolved"]


def test_the_deadline_sensor_announces_through_the_alerting_path(tmp_path, set_env):
    set_env(SPINE_DATA_DIR=str(tmp_path / "data"), SPINE_PRIVACY_KEY="test-key")
    receive(settings(), "erasure", ["late@customer.io"], received_at=datetime.now(UTC) - timedelta(hours=50))
    log = tmp_path / "alerts" / "alerts.jsonl"
    sensor = defs.resolve_sensor_def("subject_request_deadline_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"alerts": AlertsResource(log_path=str(log))})
        sensor(context)
        sensor(context)
    assert [(a["kind"], a["status"]) for a in _alerts(log)] == [("dsr_sla", "firing")]
