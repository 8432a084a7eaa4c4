"""The command line's manners: one-line usage errors, named ports, a console a person reads."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import pytest

from command_line.known_defects import KnownDefects
from orchestration import console
from orchestration.console import DbtProgress, heartbeat
from sample_company.presets import PRESETS

SPINE = [sys.executable, "-m", "command_line.main"]


def spine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SPINE, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("run", "--preset", "huge"), PRESETS),
        (("generate", "--preset", "huge"), PRESETS),
        (("sql", "--format", "xml", "select 1"), ("table", "csv", "json")),
    ],
)
def test_a_wrong_choice_is_one_line_naming_the_valid_ones_and_exit_2(args, names):
    done = spine(*args)
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(f"'{name}'" in done.stderr for name in names), done.stderr
    assert "Traceback" not in done.stderr


def test_help_lists_the_choices_and_dev_names_both_ports():
    run_help = spine("run", "--help").stdout
    assert "[tiny|small|medium|large]" in run_help and "missing_email" in run_help
    dev_help = spine("dev", "--help").stdout
    assert "--ui-port" in dev_help and "--vendor-port" in dev_help


def _node_lines(total: int) -> list[str]:
    return [
        f"{i} of {total} \x1b[32mOK\x1b[0m created sql view model staging.m{i} [OK in 0.1s]"
        for i in range(1, total + 1)
    ]


def test_dbt_progress_condenses_a_build_to_a_line_per_phase(monkeypatch):
    out = io.StringIO()
    clock = iter(range(0, 10_000))
    monkeypatch.setattr(console.time, "monotonic", lambda: float(next(clock)))  # a second per call
    progress = DbtProgress(out, "dbt build", verbose=False)
    progress.write("Running with dbt=1.11\nFound 53 models, 250 data tests\n")
    for line in _node_lines(300):
        progress.write(line + "\n")
    progress.write("\x1b[33mDone. PASS=299 WARN=1 ERROR=0 SKIP=0 TOTAL=300\x1b[0m\n")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["  dbt build: Running with dbt=1.11", "  dbt build: 53 models, 250 data tests"]
    assert re.fullmatch(r"  dbt build: Done\. PASS=299 WARN=1 ERROR=0 SKIP=0 TOTAL=300 \(\d+ s\)", lines[-1])
    progress_lines = lines[2:-1]
    # At most a line per 10 s (here each node takes a second or two), each saying how far.
    assert 10 <= len(progress_lines) <= 60 and all(" of 300 nodes done (" in line for line in progress_lines)
    assert "\x1b[" not in out.getvalue()


def test_dbt_progress_verbose_passes_every_line_without_colours_off_a_terminal():
    out = io.StringIO()
    progress = DbtProgress(out, "dbt build", verbose=True)
    for line in _node_lines(3):
        progress.write(line + "\n")
    assert out.getvalue().splitlines() == [
        line.replace("\x1b[32m", "").replace("\x1b[0m", "") for line in _node_lines(3)
    ]


def test_heartbeat_names_the_running_steps_when_the_console_is_quiet(monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    console.ACTIVITY.step("dbt_models", "STEP_START")
    try:
        console.ACTIVITY.last_said -= 60
        with heartbeat(every_s=0.2):
            # dbt's step swaps standard output for its filter: the heartbeat still reaches the terminal.
            with console.dbt_console("dbt build", {"loggers": {"console": {"config": {"log_level": "INFO"}}}}):
                print("12 of 300 OK created sql view model staging.x [OK in 0.1s]")
                time.sleep(1.5)
    finally:
        console.ACTIVITY.step("dbt_models", "STEP_SUCCESS")
    said = terminal.getvalue().splitlines()
    assert said and all("still running: dbt_models (" in line for line in said), said


MANIFEST = {
    "defects": {
        "records": {
            "hubspot.contacts": {"missing_email": ["1", "2", "3"]},
            "zendesk.tickets": {"orphan_ticket": ["9"]},
        },
        "stale_feeds": {"usage.events": {"days": 3}},
    }
}


def test_known_defects_label_what_they_explain_with_the_manifests_counts():
    known = KnownDefects(MANIFEST)
    exact = known.of_check("contact", "crm_contact_email_present")
    assert exact.label(3) == "expected (missing_email: 3 in hubspot.contacts)" and not exact.differs(3)
    assert exact.differs(4) and "but 4 found" in exact.label(4)
    assert known.of_check("usage_event", "events_received_every_day").label() == (
        "expected (stale_feed: 3 days without deliveries in usage.events)"
    )
    assert known.of_dbt_test("relationships_stg_zendesk__tickets_organization_id__x").defect == "orphan_ticket"
    assert known.of_alert("mart usage_events (marts.usage_events)", "data older than its freshness window").defect == (
        "stale_feed"
    )
    assert known.of_check("customer", "crm_arr_matches_billing") is None  # not injected here
    assert not KnownDefects(None) and known.of_alert("source stripe (raw)", "row count far off") is None


def test_spine_sql_on_a_warehouse_with_nothing_served_says_so_in_one_line(tmp_path):
    import duckdb

    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()
    done = subprocess.run(
        [*SPINE, "sql", "select 1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SPINE_WAREHOUSE": str(tmp_path / "warehouse.duckdb")},
    )
    assert done.returncode == 1 and "nothing is served" in done.stderr and "Traceback" not in done.stderr


def test_spine_sql_json_keeps_numbers_numbers_and_days_days(tmp_path):
    import json

    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema serving")
        con.execute("create table serving.t as select date '2026-01-01' as d, 1.5::decimal(5,2) as x")
    done = subprocess.run(
        [*SPINE, "sql", "--format", "json", "select * from t"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SPINE_WAREHOUSE": str(tmp_path / "warehouse.duckdb")},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"d": "2026-01-01", "x": 1.5}
