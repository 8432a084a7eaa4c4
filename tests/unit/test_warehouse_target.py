"""One setting picks the warehouse (data_spine.warehouse): the same connector loads the same
events into DuckDB and into a real PostgreSQL database, and a DuckDB warehouse's history moves
onto PostgreSQL whole (data_spine.warehouse_transfer)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import event_payloads as documented
import psycopg2
import pytest
from event_payloads import DAY_FILE
from postgres_databases import postgres_warehouse, url_of

from data_spine.settings import PROJECT_ROOT, Settings
from data_spine.warehouse import Warehouse, pg_placeholders
from data_spine.warehouse_transfer import copy_history

EVENT_COLUMNS = "message_id, type, event, user_id, anonymous_id, account_id, timestamp, received_at, format"


def test_the_target_is_duckdb_unless_set_and_a_wrong_one_is_named():
    assert Settings.from_env({}).warehouse_target == "duckdb"
    assert Settings.from_env({"SPINE_WAREHOUSE_TARGET": "Postgres"}).warehouse_target == "postgres"
    with pytest.raises(ValueError, match="SPINE_WAREHOUSE_TARGET='snowflake': choose one of duckdb, postgres"):
        Settings.from_env({"SPINE_WAREHOUSE_TARGET": "snowflake"})


def test_duckdb_placeholders_become_psycopg2_ones_outside_quotes():
    assert pg_placeholders("select ? where a like 'x?%' and b = ?") == "select %s where a like 'x?%%' and b = %s"
    assert pg_placeholders('select "odd?col" from t where c = ?') == 'select "odd?col" from t where c = %s'


def test_the_url_is_read_apart_with_libpq_defaults():
    target = Warehouse("postgres", None, "postgresql://alice:p%40ss@db.internal:6543/spine")
    assert target.pg_parts() == {
        "host": "db.internal",
        "port": "6543",
        "user": "alice",
        "password": "p@ss",
        "dbname": "spine",
    }
    assert Warehouse("postgres", None, "postgresql://db/spine").pg_parts()["port"] == "5432"
    assert target.dbt_target == "postgres" and Warehouse("duckdb", None, "").dbt_target == "dev"


def test_a_connection_takes_duckdb_calls_and_transactions_roll_back():
    with postgres_warehouse() as target, target.connect() as con:
        con.execute("create table t (id integer, note varchar)")
        con.executemany("insert into t values (?, ?)", [(1, "100%"), (2, "a?b")])
        assert con.execute("select note from t where id = ?", [1]).fetchone() == ("100%",)
        assert con.execute("select count(*) from t where note like '%?%'").fetchone() == (1,)
        con.begin()
        con.execute("delete from t")
        con.rollback()
        assert con.execute("select id, note from t order by id").df().to_dict("list") == {
            "id": [1, 2],
            "note": ["100%", "a?b"],
        }
        with target.connect(read_only=True) as reader, pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            reader.execute("delete from t")


@pytest.fixture(scope="module")
def both_targets(tmp_path_factory):
    """The vendors' documented payloads and a file of bad lines loaded by the real connector
    into a DuckDB file and into a PostgreSQL database."""
    root = tmp_path_factory.mktemp("targets")
    good = [documented.line(p) for p in documented.payloads().values()]
    bad = ['{"messageId": "ajs-cut", "type": "tra', documented.line({"messageId": "ajs-nobody", "type": "track"})]
    with postgres_warehouse() as target:
        loaded = {}
        for name, extra in (("duckdb", {}), ("postgres", {"warehouse_target": "postgres"})):
            cfg = dataclasses.replace(documented.settings_in(root / name), **extra, postgres_url=target.postgres_url)
            documented.drop(cfg.data_dir / "landing", DAY_FILE, good + bad)
            documented.load_usage(cfg)
            # The same events again under another name, and once more inside a new file: each
            # event is stored once.
            documented.drop(cfg.data_dir / "landing", "events_2026-11-21.jsonl.gz", good[:3] + good[:1])
            documented.load_usage(cfg)
            loaded[name] = cfg
        yield loaded, target


def _rows(cfg, sql: str) -> list[tuple]:
    with Warehouse.of(cfg).connect(read_only=True) as con:
        return [tuple(None if v is None else str(v)[:23] for v in row) for row in con.execute(sql).fetchall()]


def test_the_same_events_land_alike_on_both_targets(both_targets):
    loaded, _ = both_targets
    events = f"select {EVENT_COLUMNS} from raw_usage_events.events order by message_id"
    on_duckdb, on_postgres = _rows(loaded["duckdb"], events), _rows(loaded["postgres"], events)
    assert len(on_duckdb) == len(documented.payloads())
    assert on_postgres == on_duckdb
    quarantine = "select location, reason from raw_usage_events.quarantine order by location"
    with Warehouse.of(loaded["postgres"]).connect() as con:
        on_postgres = con.execute(quarantine).fetchall()
    with duckdb.connect(str(loaded["duckdb"].warehouse), read_only=True) as con:
        assert on_postgres == con.execute(quarantine).fetchall()
    lines = len(documented.payloads())
    assert [location for location, _ in on_postgres] == [f"{DAY_FILE}:{lines + 1}", f"{DAY_FILE}:{lines + 2}"]
    assert "not valid JSON" in on_postgres[0][1] and "neither a user id" in on_postgres[1][1]


def test_a_duckdb_warehouse_moves_onto_postgres_whole_and_again_alike(both_targets, tmp_path):
    loaded, _ = both_targets
    source = loaded["duckdb"].warehouse
    with postgres_warehouse("spine_move") as target:
        first = copy_history(source, target)
        again = copy_history(source, target)
        assert first == again
        with duckdb.connect(str(source), read_only=True) as con:
            expected = con.execute("select count(*) from raw_usage_events.events").fetchone()[0]
            states = con.execute("select count(*) from raw_usage_events._dlt_pipeline_state").fetchone()[0]
        moved = {(c.schema, c.table): c.rows for c in first}
        assert moved[("raw_usage_events", "events")] == expected
        assert moved[("raw_usage_events", "_dlt_pipeline_state")] == states >= 1
        with target.connect() as con:
            assert con.execute("select count(*) from raw_usage_events.events").fetchone() == (expected,)
            kinds = dict(
                con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = 'raw_usage_events' and table_name = 'events'"
                ).fetchall()
            )
        assert kinds["timestamp"] == "timestamp with time zone"
        assert kinds["properties"] == "jsonb"


def test_what_has_no_postgres_path_yet_says_so_instead_of_touching_a_duckdb_file(tmp_path):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "spine"), "privacy", "scan", "--email", "someone@example.com"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SPINE_WAREHOUSE_TARGET": "postgres", "SPINE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "spine privacy works on the DuckDB warehouse only: it has no PostgreSQL path yet" in done.stderr
    assert not (tmp_path / "warehouse.duckdb").exists()


def _ensure(url: str, barrier) -> None:
    barrier.wait()
    Warehouse("postgres", Path("/nonexistent"), url).ensure_database()


def test_processes_starting_together_on_a_new_postgres_warehouse_all_find_its_database():
    """Processes that start together on a PostgreSQL warehouse whose database does not exist
    yet each create it if missing: the ones that lose the race find it made."""
    target = Warehouse("postgres", Path("/nonexistent"), url_of(f"spine_test_race_{uuid.uuid4().hex[:10]}"))
    forked = multiprocessing.get_context("fork")
    barrier = forked.Barrier(4)
    started = [forked.Process(target=_ensure, args=(target.postgres_url, barrier)) for _ in range(4)]
    try:
        for process in started:
            process.start()
        for process in started:
            process.join(timeout=60)
        assert [process.exitcode for process in started] == [0] * 4
        with target.connect() as con:
            assert con.execute("select current_database()").fetchone() == (target.pg_parts()["dbname"],)
    finally:
        target.drop_database()
