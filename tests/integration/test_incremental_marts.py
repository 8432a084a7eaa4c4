"""The incremental dbt models give what a full refresh gives, after days of every kind of change:
records updated and deleted in the SaaS tools, a new day of events, events arriving late (a few
days and months late), and a user's first group call placing their earlier calls in an account."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from datetime import date, timedelta

import duckdb
import pytest
from dbt_runs import passed, run_dbt

from connectors.pipelines import load
from data_spine.settings import settings
from expectations.runner import ALL_ROWS, WRITTEN_LAST, validate_entity
from sample_company.generate import generate, read_manifest
from sample_company.next_day import add_day
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
}
INCREMENTAL = {
    "intermediate": ("int_usage_user_days",),
    "marts": ("usage_events", "feature_adoption_daily"),
}
# Bookkeeping of when a run wrote a row; everything else must match.
WHEN_WRITTEN = ("refreshed_at",)
NEWCOMER = "usr_newcomer"


def _calls(day: date, rows: list[dict], name: str, landing) -> None:
    """A landing file of calls in the collector's own shape, received on `day`."""
    lines = []
    for i, row in enumerate(rows):
        happened = row.pop("at")
        lines.append(
            {
                "message_id": f"msg_{name}_{i}",
                "type": "track",
                "event": "report.exported.csv",
                "user_id": "usr_500001",
                "account_id": None,
                "timestamp": f"{happened:%Y-%m-%d}T10:00:00.000Z",
                "received_at": f"{day:%Y-%m-%d}T23:00:00.000Z",
                **row,
            }
        )
    with gzip.open(landing / f"events_{day:%Y-%m-%d}.{name}.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")


def _rows(warehouse, schema: str, table: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = [
            c
            for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                "order by ordinal_position",
                [schema, table],
            ).fetchall()
            if c not in WHEN_WRITTEN
        ]
        return con.execute(f"select {', '.join(columns)} from {schema}.{table} order by all").fetchall()


@pytest.fixture
def company(tmp_path):
    cfg = dataclasses.replace(
        settings(),
        data_dir=tmp_path / "data",
        warehouse=tmp_path / "data" / "warehouse.duckdb",
        landing_dir=tmp_path / "data" / "landing" / "usage_events",
    )
    generate(cfg.sources_dir, cfg.landing_dir, preset="tiny", seed=11, as_of=date(2026, 11, 21), log=lambda *_: None)
    return cfg


def test_full_refresh_gives_the_incremental_marts_after_days_of_changes(company, tmp_path):
    cfg = company
    target = tmp_path / "target"
    workspace = "ws_100001"

    def day_run() -> str:
        as_of = read_manifest(cfg.sources_dir)["as_of"]
        with VendorApiServer(cfg.sources_dir) as server:
            for source in CREDENTIALS:
                load(source, cfg, base_url=server.base_url(source), **CREDENTIALS[source])
        load("usage_events", cfg)
        run = run_dbt(["run"], cfg.warehouse, target, as_of=as_of)
        assert passed(run), run.stdout[-3000:]
        return as_of

    seeded = run_dbt(["seed"], cfg.warehouse, target, as_of="2026-11-21")
    assert passed(seeded), seeded.stdout[-3000:]
    day_run()
    # As a warehouse built before the models kept their bookkeeping: the next run builds them
    # from the history once and adds the column, instead of failing on it.
    with duckdb.connect(str(cfg.warehouse)) as con:
        for schema, tables in INCREMENTAL.items():
            for table in tables:
                con.execute(f"alter table {schema}.{table} drop column refreshed_at")

    # Day 1: the tools change, a day of events arrives, and so do calls from days and months
    # ago, and calls of a user nobody has placed in an account yet.
    add_day(cfg.sources_dir, cfg.landing_dir, fraction=0.05, seed=3, log=lambda *_: None)
    today = date.fromisoformat(read_manifest(cfg.sources_dir)["as_of"]) - timedelta(days=1)
    _calls(
        today,
        [
            {"at": today - timedelta(days=3), "account_id": workspace},
            {"at": today - timedelta(days=90), "account_id": workspace},
            {"at": today - timedelta(days=400), "event": "billing.viewed.invoice", "account_id": workspace},
            {"at": today - timedelta(days=20), "user_id": NEWCOMER},
            {"at": today - timedelta(days=5), "user_id": NEWCOMER},
        ],
        "late",
        cfg.landing_dir,
    )
    day_run()
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        unplaced = con.execute(
            "select count(*) from marts.usage_events where user_id = ? and workspace_id is null", [NEWCOMER]
        ).fetchone()
    assert unplaced == (2,)

    # Day 2: more changes, and the newcomer's group call places their earlier calls.
    add_day(cfg.sources_dir, cfg.landing_dir, fraction=0.05, seed=4, log=lambda *_: None)
    today += timedelta(days=1)
    _calls(
        today,
        [
            {"at": today, "type": "group", "event": None, "user_id": NEWCOMER, "account_id": workspace},
            {"at": today - timedelta(days=30), "account_id": workspace, "event": "report.shared.link"},
        ],
        "placed",
        cfg.landing_dir,
    )
    as_of = day_run()
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        placed = con.execute(
            "select count(*) from marts.usage_events where user_id = ? and workspace_id = ?", [NEWCOMER, workspace]
        ).fetchone()
        (total,) = con.execute("select count(*) from marts.usage_events").fetchone()
        (last_run,) = con.execute(
            "select count(*) from marts.usage_events where refreshed_at = (select max(refreshed_at) "
            "from marts.usage_events)"
        ).fetchone()
    assert placed == (3,)
    # The last run wrote the day's calls and the newcomer's, not the history.
    assert 0 < last_run < total / 5, (last_run, total)

    incremental = {(s, t): _rows(cfg.warehouse, s, t) for s, tables in INCREMENTAL.items() for t in tables}
    rebuilt = tmp_path / "rebuilt.duckdb"
    shutil.copy(cfg.warehouse, rebuilt)
    run = run_dbt(["run", "--full-refresh"], rebuilt, tmp_path / "target_full", as_of=as_of)
    assert passed(run), run.stdout[-3000:]
    for (schema, table), rows in incremental.items():
        full = _rows(rebuilt, schema, table)
        assert full, table
        assert rows == full, f"{schema}.{table}: {sum(r not in full for r in rows)} rows not in the full refresh"
    # The marts the incremental ones feed are rebuilt from them, and match too.
    for table in ("customers", "identity_resolution_metrics"):
        assert _rows(cfg.warehouse, "marts", table) == _rows(rebuilt, "marts", table), table

    # The usage audit of what changed checks the events the last run wrote, row by row, and
    # the mart as a whole; after a full refresh, which wrote every row, it checks them all.
    def audit(warehouse, whole_history: bool) -> dict[str, tuple]:
        day = date.fromisoformat(as_of)
        found = validate_entity(warehouse, "usage_event", f"run-{whole_history}", day, whole_history=whole_history)
        return {r.check_name: (r.element_count, r.unexpected_count, r.rows_checked) for r in found}

    daily, weekly = audit(cfg.warehouse, False), audit(cfg.warehouse, True)
    assert daily["event_id_present"] == (last_run, 0, WRITTEN_LAST)
    assert weekly["event_id_present"] == (total, 0, ALL_ROWS)
    assert daily["events_not_empty"] == weekly["events_not_empty"] == (1, 0, ALL_ROWS)
    assert daily["one_adoption_row_per_day_feature"] == weekly["one_adoption_row_per_day_feature"]
    for name, (rows, bad, _) in daily.items():
        assert rows <= weekly[name][0] and bad <= weekly[name][1], name
    rebuilt_daily = audit(rebuilt, False)
    assert {n: c[:2] for n, c in rebuilt_daily.items()} == {n: c[:2] for n, c in audit(rebuilt, True).items()}
