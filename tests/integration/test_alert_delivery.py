"""Honest alert delivery: a channel that is down leaves its alerts owed, the run's output and
the scorecard say so per channel (how many, since when, why), and the next dispatch delivers
each owed alert exactly once. Real HTTP on local ports (nothing listening, a host that never
answers, a Slack stand-in), the real sensor, and real `spine run` / `spine alerts` processes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import jsonschema
from pipeline_runs import prepare, spine_env, spine_run

from data_spine.settings import PROJECT_ROOT
from orchestration.definitions import defs
from orchestration.resources import AlertsResource
from privacy.scan import EMAIL, emails_in_files, emails_in_warehouse
from quality.alert_conditions import Condition
from quality.scorecard import SCHEMA, render_html, render_markdown, score_results

FOOTER = re.compile(r"data-spine alert ([0-9a-f]{32}), raised ")


class SlackStandIn:
    """Answers every POST like a Slack incoming webhook (200, `ok`) and records it."""

    def __init__(self, port: int):
        self.posts: list[dict] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alert_ids(self) -> list[str]:
        """The alert each message carries (its footer names the alert of the log)."""
        return [FOOTER.match(p["attachments"][0]["footer"]).group(1) for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _silent_host(port: int):
    """Accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(16)
        yield


def _log_ids(log: Path) -> list[str]:
    return [json.loads(line)["id"] for line in log.read_text().splitlines()]


def _condition(key: str) -> Condition:
    return Condition(
        key=f"blocking_check:customer:{key}",
        kind="blocking_check",
        state="fail",
        dataset="customer (customers)",
        what=f"blocking check failed: {key}",
        how_many="2 of 501 rows",
        owner="Data Engineering",
        action="Rebuild the marts.",
    )


def test_the_sensor_keeps_alerts_owed_while_slack_is_down_then_delivers_each_once(tmp_path):
    port = _unused_port()
    alerts = AlertsResource(
        log_path=str(tmp_path / "alerts.jsonl"),
        slack_webhook_url=f"http://127.0.0.1:{port}/s",
        backoff_seconds=0.05,
        timeout_seconds=5,
        max_wait_seconds=1.0,
    )
    sensor = defs.resolve_sensor_def("quality_alerts_sensor")
    store = alerts.store()

    def tick(instance) -> str:
        context = dg.build_sensor_context(instance=instance, definitions=defs, resources={"alerts": alerts})
        return sensor.evaluate_tick(context).skip_message

    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey(["audit", "customer"]),
                metadata={"alert_conditions": dg.MetadataValue.json([_condition(k).to_json() for k in ("a", "b")])},
            )
        )

        message = tick(instance)  # nothing listens on the port
        raised = store.read()["undelivered"][0]["alert"]["sent_at"]
        since = f"{raised[:10]} {raised[11:16]} UTC"
        assert message == (
            f"alerts: 2 raised; log delivered 2; slack delivered 0, 2 owed since {since} "
            "(POST failed: connection refused), retried by the next run or the alerts sensor"
        )
        slack = store.delivery()["slack"]
        assert (slack.owed, slack.owed_since, slack.delivered_total) == (2, raised, 0)

        # What the scorecard written before the next dispatch shows, in every format.
        card = score_results([], delivery=store.delivery(["log", "slack"]))
        jsonschema.validate(card, json.loads(SCHEMA.read_text()))
        assert card["alert_delivery"]["moment"] == "before_dispatch" and card["alert_delivery"]["owed"] == 2
        assert "before this run's alerts were dispatched" in card["alert_delivery"]["note"]
        digest = render_markdown(card)
        assert f"| slack | **owed** | 2 | {since} | POST failed: connection refused | 0 | 0 |" in digest
        html = render_html(card)
        assert "<td>2</td>" in html and "POST failed: connection refused" in html

        with _silent_host(port):  # a host that takes the connection and never answers
            started = time.monotonic()
            message = tick(instance)
            waited = time.monotonic() - started
        assert waited < 3, f"a silent Slack held the dispatch for {waited:.1f} s (max_wait_seconds=1)"
        assert "slack delivered 0, 2 owed" in message and "POST got no answer within" in message

        slack_back = SlackStandIn(port)
        try:
            message = tick(instance)
            assert message == "alerts: 0 raised; log delivered 0; slack delivered 2; nothing owed"
            assert tick(instance) == "no change in any quality condition"
        finally:
            slack_back.close()
    assert sorted(slack_back.alert_ids()) == sorted(_log_ids(Path(alerts.log_path)))
    assert len(slack_back.posts) == 2
    slack = store.delivery()["slack"]
    assert (slack.owed, slack.delivered_total, slack.status) == (0, 2, "delivered")


def _spine(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "command_line.main", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _reads_as_a_summary(output: str, data: Path) -> None:
    """A run's output a person reads: short, colourless off a terminal, the customer and revenue
    figures first (as served), every failure of the sample company's known defects marked so."""
    assert len(output.splitlines()) < 120, output
    assert "\x1b[" not in output
    after = output.split("spine_job succeeded in", 1)[1].splitlines()[1:]
    headline = [line for line in after if line.strip()][:6]
    assert headline[0].startswith("Customers and revenue as of"), after[:8]
    shown = dict(re.match(r"  (.+?)\s{2,}(.+)$", line).groups() for line in headline[1:])
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        mrr, arr = con.execute(
            "select closing_mrr, closing_arr from serving.mrr_bridge order by month desc limit 1"
        ).fetchall()[0]
    assert (shown["MRR"], shown["ARR"]) == (f"${mrr:,.2f}", f"${arr:,.2f}")
    assert re.fullmatch(r"\d+\.\d%", shown["NRR, 12 months"])
    failing = [line for line in output.splitlines() if re.match(r"  (warn|warning|blocking|error) ", line)]
    manifest = json.loads((data / "sources" / "manifest.json").read_text())
    assert failing and all(" - expected (" in line for line in failing), failing
    for line in failing:
        defect, count, source = re.search(
            r"expected \((\w+): ([\d,]+)(?: days without deliveries)? in ([\w.]+)\)", line
        ).groups()
        listed = manifest["defects"]["records"].get(source, {}).get(defect) or []
        stopped = manifest["defects"]["stale_feeds"].get(source, {}).get("days")
        assert int(count.replace(",", "")) == (stopped if defect == "stale_feed" else len(listed)), line
    assert "every failure above is one of the sample company's known defects" in output


def test_spine_run_with_slack_down_reports_owed_alerts_and_the_next_dispatch_delivers_each_once(tmp_path):
    """The sample company's known defects raise alerts; Slack's URL points at a port where
    nothing listens, then at a stand-in that answers like Slack."""
    root = tmp_path / "run"
    prepare(root, defects="default")
    port = _unused_port()
    # A channel that is down holds a dispatch for at most SPINE_ALERT_MAX_WAIT_SECONDS.
    env = spine_env(
        root,
        SPINE_ALERT_SLACK_WEBHOOK_URL=f"http://127.0.0.1:{port}/services/T0/B0/x",
        SPINE_ALERT_MAX_WAIT_SECONDS="2",
    )
    reports = root / "data" / "reports"
    log = root / "data" / "alerts" / "alerts.jsonl"

    spine_run(root, root / "spine_run.log", defects="default", env=env).wait(timeout=900)
    output = (root / "spine_run.log").read_text()
    _reads_as_a_summary(output, root / "data")
    found = re.search(
        r"Alerts: (\d+) raised this run; log delivered \1; slack delivered 0, \1 owed since "
        r"(\d{4}-\d\d-\d\d \d\d:\d\d UTC) \(POST failed: connection refused\), "
        r"retried by the next run or the alerts sensor",
        output,
    )
    assert found, output[-4000:]
    assert "sent this run" not in output
    owed, since = int(found.group(1)), found.group(2)
    raised = _log_ids(log)
    assert owed > 0 and len(raised) == owed

    card = json.loads((reports / "scorecard.json").read_text())
    jsonschema.validate(card, json.loads(SCHEMA.read_text()))
    delivery = card["alert_delivery"]
    slack = next(c for c in delivery["channels"] if c["channel"] == "slack")
    assert delivery["moment"] == "after_dispatch" and delivery["owed"] == owed
    assert (slack["status"], slack["owed"], slack["last_error"]) == ("owed", owed, "POST failed: connection refused")
    assert f"{slack['owed_since'][:10]} {slack['owed_since'][11:16]} UTC" == since
    assert (
        f"| slack | **owed** | {owed} | {since} | POST failed: connection refused |"
        in (reports / "scorecard.md").read_text()
    )

    slack_back = SlackStandIn(port)
    try:
        caught_up = _spine(root, env, "alerts")
        delivered = list(slack_back.posts)
        again = _spine(root, env, "alerts")
    finally:
        slack_back.close()
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr[-3000:]
    assert f"Alerts: 0 raised; log delivered 0; slack delivered {owed}; nothing owed" in caught_up.stdout
    assert len(delivered) == owed and sorted(
        FOOTER.match(p["attachments"][0]["footer"]).group(1) for p in delivered
    ) == sorted(raised)
    card = json.loads((reports / "scorecard.json").read_text())
    slack = next(c for c in card["alert_delivery"]["channels"] if c["channel"] == "slack")
    assert card["alert_delivery"]["owed"] == 0 and (slack["status"], slack["delivered_total"]) == ("delivered", owed)
    assert "| slack | all delivered | 0 |" in (reports / "scorecard.md").read_text()

    assert again.returncode == 0 and "slack delivered 0; nothing owed" in again.stdout
    assert len(slack_back.posts) == owed  # the third dispatch sent nothing more
    assert _log_ids(log) == raised

    # The personal-data guard, on a run whose defects put bad emails into the checks: no
    # alert (logged or posted), report, log, run storage or dlt state holds an email.
    with duckdb.connect(str(root / "data" / "warehouse.duckdb"), read_only=True) as con:
        emails = emails_in_warehouse(con)
    written = [log.parent, reports, root / "dagster_home", root / "data" / "dlt", root / "spine_run.log"]
    assert len(emails) > 100 and emails_in_files(written, emails) == {}
    posted = {m.decode().lower() for m in EMAIL.findall(json.dumps(delivered).encode())}
    assert not posted & emails
