"""A bad record or a broken model holds back only what depends on it.

Three `spine run`s of the `tiny` company in one folder:
1. with a Zendesk ticket of an unknown priority and one whose organization id is not a number:
   the run finishes, all six entities are published, the ticket checks warn with the ids;
2. with a copy of the project whose `support_backlog_daily` model fails: only the ticket entity
   (built from it) is held back, serving keeps its version from run 1, the other five entities
   are published, the scorecard is written and says why, one alert names the model and error;
3. after `spine change --fraction 0.01` (updates, deletes), with the project as it is: dbt
   builds with ERROR 0, every entity is published with the changes and deletes in serving,
   and the alert resolves.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from pipeline_runs import prepare, spine_env, spine_run, warehouse_digest

from data_spine.settings import PROJECT_ROOT

BUG = "a deliberate bug in support_backlog_daily"
ENTITIES = {"customer", "contact", "revenue", "invoice", "ticket", "usage_event"}


def _edit_tickets(sources: Path) -> dict[str, str]:
    """One ticket with an unknown priority, one with a text organization id; their ids."""
    path = sources / "zendesk" / "tickets.jsonl"
    tickets = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    tickets[0]["priority"] = "critical"
    with_org = next(t for t in tickets[1:] if t.get("organization_id") is not None)
    with_org["organization_id"] = "org-not-a-number"
    path.write_text("".join(json.dumps(t) + "\n" for t in tickets))
    return {"unknown_enum": str(tickets[0]["id"]), "wrong_type": str(with_org["id"])}


def _broken_copy(dest: Path) -> Path:
    """The project with one mart that fails at run time, as a real bug would."""
    top = {".git", ".venv", "data", "tests", ".dagster_home", "benchmarks"}

    def generated(folder: str, names: list[str]) -> set[str]:
        skip = top if Path(folder) == PROJECT_ROOT else set()
        return {n for n in names if n in skip or n in ("target", "__pycache__", "logs") or n.endswith(".duckdb")}

    shutil.copytree(PROJECT_ROOT, dest, ignore=generated)
    model = dest / "dbt_project" / "models" / "marts" / "support_backlog_daily.sql"
    model.write_text(model.read_text().rstrip() + f"\nwhere error('{BUG}') is null\n")
    return dest


def _rows(warehouse: Path, sql: str, *params) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def _decisions(warehouse: Path) -> dict[str, dict[str, tuple]]:
    """run id -> entity -> (status, reason, serving run id), in decision order."""
    out: dict[str, dict[str, tuple]] = {}
    for run_id, entity, status, reason, serving in _rows(
        warehouse, "select run_id, entity, status, reason, serving_run_id from quality.publications order by decided_at"
    ):
        out.setdefault(run_id, {})[entity] = (status, reason, serving)
    return out


def _alerts(root: Path) -> list[dict]:
    log = root / "data" / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _serving_ticket(warehouse: Path) -> dict:
    return {
        k: v
        for k, v in warehouse_digest(warehouse, ("serving",)).items()
        if k in ("serving.ticket_metrics", "serving.support_backlog_daily")
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("isolation")
    prepare(root)
    ids = _edit_tickets(root / "data" / "sources")
    warehouse = root / "data" / "warehouse.duckdb"
    out: dict = {"root": root, "ids": ids, "warehouse": warehouse}

    rc = spine_run(root, root / "run1.log").wait(timeout=900)
    out["run1"] = (
        rc,
        (root / "run1.log").read_text(),
        _decisions(warehouse),
        _serving_ticket(warehouse),
        json.loads((root / "data" / "reports" / "scorecard.json").read_text()),
        len(_alerts(root)),
    )

    code = _broken_copy(tmp_path_factory.mktemp("broken") / "project")
    rc = spine_run(root, root / "run2.log", code=code).wait(timeout=900)
    out["run2"] = (
        rc,
        (root / "run2.log").read_text(),
        _decisions(warehouse),
        _serving_ticket(warehouse),
        json.loads((root / "data" / "reports" / "scorecard.json").read_text()),
        len(_alerts(root)),
    )

    changed = subprocess.run(
        [sys.executable, "-m", "command_line.main", "change", "--fraction", "0.01", "--seed", "7"],
        cwd=PROJECT_ROOT,
        env=spine_env(root),
        capture_output=True,
        text=True,
        check=True,
    )
    out["changed"] = changed.stdout
    rc = spine_run(root, root / "run3.log").wait(timeout=900)
    out["run3"] = (
        rc,
        (root / "run3.log").read_text(),
        _decisions(warehouse),
        _serving_ticket(warehouse),
        json.loads((root / "data" / "reports" / "scorecard.json").read_text()),
        len(_alerts(root)),
    )
    return out


def _latest_run(decisions: dict) -> dict[str, tuple]:
    return list(decisions.values())[-1]


def test_bad_records_in_one_source_stop_nothing_and_are_named(runs):
    rc, output, decisions, _, scorecard, _ = runs["run1"]
    assert rc == 0, output[-3000:]
    latest = _latest_run(decisions)
    assert set(latest) == ENTITIES and {s for s, _, _ in latest.values()} == {"published"}, latest

    ticket_checks = {c["check"]: c for c in scorecard["entities"]["ticket"]["failing_checks"]}
    priority = ticket_checks["ticket_priority_valid"]
    assert priority["severity"] == "warning" and priority["unexpected_count"] == 1
    assert runs["ids"]["unknown_enum"] in json.dumps(priority["sample"])
    # The value that does not fit the declared type is kept beside the typed column, not lost.
    kept = _rows(
        runs["warehouse"],
        "select organization_id, organization_id__v_text from raw_zendesk.tickets where id = ?",
        int(runs["ids"]["wrong_type"]),
    )
    assert kept == [(None, "org-not-a-number")]
    # ... and counted by the source's type check, which names the record.
    wrong = runs["ids"]["wrong_type"]
    assert (
        f"raw_zendesk.tickets.organization_id: 1 value(s) of another type kept in organization_id__v_text, "
        f"e.g. {{'id': '{wrong}', 'value': 'org-not-a-number'}}"
    ) in output


def test_a_failing_model_holds_back_only_the_entities_built_from_it(runs):
    rc, output, decisions, serving_ticket, scorecard, _ = runs["run2"]
    assert rc != 0
    assert "dbt model support_backlog_daily failed" in output and BUG in output
    latest = _latest_run(decisions)
    assert set(latest) == ENTITIES, latest
    assert latest["ticket"][0] == "held" and "support_backlog_daily" in latest["ticket"][1]
    assert {e for e, (status, _, _) in latest.items() if status == "published"} == ENTITIES - {"ticket"}
    # Serving keeps run 1's ticket tables, and says so.
    assert serving_ticket == runs["run1"][3]
    run1_id = next(iter(runs["run1"][2]))
    assert latest["ticket"][2] == run1_id
    # The scorecard is written on this run too, with what was held back and why.
    assert scorecard["generated_at"] > runs["run1"][4]["generated_at"]
    held = scorecard["entities"]["ticket"]["publication"]
    assert held["status"] == "held" and "support_backlog_daily" in held["reason"] and BUG in held["reason"]
    assert "ticket held back" in output


def test_a_failed_step_alerts_once_and_resolves_after_the_next_good_run(runs):
    before, after_failure, after_fix = runs["run1"][5], runs["run2"][5], runs["run3"][5]
    alerts = _alerts(runs["root"])
    failures = [a for a in alerts[before:after_failure] if a["kind"] == "step_failure"]
    assert len(failures) == 1, failures
    alert = failures[0]
    assert alert["status"] == "firing" and "dbt_models" in alert["what"]
    assert "support_backlog_daily" in alert["what"] and BUG in alert["what"]
    assert alert["owner"] and alert["suggested_action"]
    resolved = [a for a in alerts[after_failure:after_fix] if a["key"] == alert["key"]]
    assert [a["status"] for a in resolved] == ["resolved"]
    assert not [a for a in alerts[after_fix:] if a["kind"] == "step_failure"]


def test_the_next_good_run_publishes_the_held_entity(runs):
    rc, output, decisions, serving_ticket, scorecard, _ = runs["run3"]
    assert rc == 0, output[-3000:]
    latest = _latest_run(decisions)
    assert {s for s, _, _ in latest.values()} == {"published"}
    assert scorecard["entities"]["ticket"]["publication"]["status"] == "published"


def _source(root: Path, vendor: str, resource: str) -> list[dict]:
    path = root / "data" / "sources" / vendor / f"{resource}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_changed_and_deleted_records_reach_serving_with_no_build_error(runs):
    """The README's incremental demo: `spine change --fraction 0.01 && spine run`."""
    rc, output, _, _, _, _ = runs["run3"]
    assert "deleted" in runs["changed"], runs["changed"]
    assert rc == 0, output[-3000:]
    done = re.findall(r"Done\. PASS=\d+ WARN=\d+ ERROR=(\d+)", output)
    assert done and done[-1] == "0", done
    root, warehouse = runs["root"], runs["warehouse"]
    deleted = {t["id"] for t in _source(root, "zendesk", "tickets") if t.get("status") == "deleted"}
    assert deleted
    served = {i for (i,) in _rows(warehouse, "select ticket_id from serving.ticket_metrics")}
    assert served and not deleted & served
    # Every Stripe customer's billing address as the source has it now (the change rewrites some).
    billing = {c["id"]: (c.get("email") or "").strip().lower() or None for c in _source(root, "stripe", "customers")}
    contacts = dict(_rows(warehouse, "select source_id, email from serving.contacts where contact_role = 'billing'"))
    assert contacts == billing
