"""The quality layer on PostgreSQL agrees with DuckDB on the same data.

The `small` company's warehouse (the shared run) is copied twice: a DuckDB file, and a
PostgreSQL database of this test's own (created here, dropped after) holding the same marts,
source models, serving tables and quality history, with the types dbt-postgres gives them. The
same defects are added to both; then each suite is audited on each, by Great Expectations'
own PostgreSQL datasource on one side and the DuckDB adapter on the other, and every check must
find the same: pass or fail, rows judged, rows unexpected, observed value. Publishing on
PostgreSQL holds the entity whose blocking check fails and the one whose mart changed after its
audit, publishes the rest (serving then holds exactly the marts), replaces by key only the
events an incremental build rewrote, and the scorecard scores as DuckDB's does. The audit and
publishing assets run on PostgreSQL through the Dagster job as well.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
from postgres_databases import postgres_warehouse

from data_spine.settings import settings
from data_spine.warehouse import Warehouse
from data_spine.warehouse_transfer import Column, copy_history, copy_table
from expectations.runner import RESULTS_TABLE, table_fingerprint, validate_all
from expectations.suites import SUITES
from orchestration.definitions import defs
from quality.publishing import publish
from quality.scorecard import build_scorecard

# What the suites read besides the marts: dbt's staging and intermediate models (views on
# DuckDB, copied as tables).
MODEL_SCHEMAS = ("staging", "intermediate")
# The same defects, written in SQL both dialects take: a customer on two rows (blocking), markup
# in a contact's name (an inline handler, the regex PostgreSQL reads differently), a control
# character in a ticket's subject.
DEFECTS = (
    "insert into marts.customers select * from marts.customers "
    "where customer_id = (select min(customer_id) from marts.customers)",
    "update marts.contacts set full_name = 'Jo onmouseover=alert(1)' "
    "where contact_key = (select min(contact_key) from marts.contacts)",
    "update marts.ticket_metrics set subject = 'printer' || chr(7) || 'jam' "
    "where ticket_id = (select min(ticket_id) from marts.ticket_metrics)",
)


def _copy_models(duckdb_path: Path, target: Warehouse) -> None:
    """The staging and intermediate models (views included) as tables of PostgreSQL."""
    with duckdb.connect(str(duckdb_path), read_only=True) as source:
        found = source.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_schema in (?, ?) order by table_schema, table_name, ordinal_position",
            list(MODEL_SCHEMAS),
        ).fetchall()
        models: dict[tuple[str, str], list[Column]] = {}
        for schema, table, column, data_type in found:
            models.setdefault((schema, table), []).append(Column(column, data_type))
        raw = psycopg2.connect(target.postgres_url)
        try:
            for (schema, table), columns in models.items():
                copy_table(source, raw, schema, table, columns)
        finally:
            raw.close()


@pytest.fixture(scope="module")
def warehouses(first_run, tmp_path_factory):
    """(DuckDB copy, PostgreSQL copy) of the shared run's warehouse, the defects added to both."""
    folder = tmp_path_factory.mktemp("quality_on_postgres")
    duck = Warehouse("duckdb", folder / "warehouse.duckdb", "")
    shutil.copyfile(settings().warehouse, duck.duckdb_path)
    with postgres_warehouse("spine_test_quality") as pg:
        copy_history(duck.duckdb_path, pg, schemas=["seeds", "marts", "serving", "quality"])
        _copy_models(duck.duckdb_path, pg)
        for warehouse in (duck, pg):
            with warehouse.connect() as con:
                for statement in DEFECTS:
                    con.execute(statement)
        yield duck, pg


def _by_check(results) -> dict[tuple[str, str], tuple]:
    return {
        (r.entity, r.check_name): (
            r.success,
            r.element_count,
            r.unexpected_count,
            json.loads(r.observed_value) if r.observed_value else None,
            r.error,
        )
        for r in results
    }


@pytest.fixture(scope="module")
def audits(warehouses, tmp_path_factory):
    duck, pg = warehouses
    reports = tmp_path_factory.mktemp("pg_reports")
    as_of = settings().as_of
    on_duckdb = validate_all(duck, "duckdb-audit", as_of=as_of)
    on_postgres = validate_all(pg, "postgres-audit", as_of=as_of, reports_dir=reports)
    return on_duckdb, on_postgres, reports


def test_every_check_finds_the_same_on_postgres_as_on_duckdb(audits):
    on_duckdb, on_postgres, reports = audits
    duck, pg = _by_check(on_duckdb), _by_check(on_postgres)
    assert len(pg) == sum(len(s.checks) for s in SUITES.values())
    assert not [key for key, found in pg.items() if found[4]], "no check raised an error on PostgreSQL"
    assert {k: v for k, v in pg.items() if v != duck[k]} == {}, "checks that disagree with DuckDB"
    # The defects added are found on both, the regex ones through GX's stock PostgreSQL mapping.
    assert pg[("customer", "customer_id_unique")][:3] == (False, duck[("customer", "customer_id_unique")][1], 2)
    assert not pg[("contact", "contact_name_plain_text")][0]
    assert not pg[("ticket", "ticket_subject_plain_text")][0]
    assert any(not found[0] for (_, check), found in pg.items() if check.endswith("_valid")), "a regex check failed"
    # GX's Data Docs pages of the PostgreSQL audit.
    assert list((reports / "gx_data_docs" / "validations" / "customer").rglob("customers.html"))


def test_publishing_on_postgres_holds_what_failed_or_changed_and_serves_exactly_the_rest(warehouses, audits):
    duck, pg = warehouses
    with pg.connect() as con:
        served_customers = table_fingerprint(con, "serving.customers", ("customer_id",))
        # Rebuilt after its audit, as by another run.
        con.execute(
            "update marts.invoices set amount_paid = amount_paid + 1 where invoice_id = "
            "(select min(invoice_id) from marts.invoices)"
        )
    decisions = {entity: publish(pg, suite, "postgres-audit") for entity, suite in SUITES.items()}
    assert {e for e, d in decisions.items() if not d.published} == {"customer", "invoice"}
    assert "customer_id_unique" in decisions["customer"].blocking_failures
    assert "invoices changed after the audit" in decisions["invoice"].reason
    with pg.connect(read_only=True) as con:
        assert table_fingerprint(con, "serving.customers", ("customer_id",)) == served_customers
        for entity in ("contact", "revenue", "ticket", "usage_event"):
            for table in SUITES[entity].publishes:
                key = SUITES[entity].key_of(table)
                served = table_fingerprint(con, f"serving.{table}", key)
                assert served == table_fingerprint(con, f"marts.{table}", key), table
        statuses = dict(
            con.execute("select entity, status from quality.publications where run_id = 'postgres-audit'").fetchall()
        )
    assert statuses == {e: "held" if e in ("customer", "invoice") else "published" for e in SUITES}

    # What an incremental dbt build does to the events: rewrite a few, add a few.
    suite = SUITES["usage_event"]
    with pg.connect() as con:
        (built,) = con.execute("select max(refreshed_at) + interval '1 hour' from marts.usage_events").fetchone()
        con.execute(
            "update marts.usage_events set customer_id = null, refreshed_at = ? "
            "where event_id in (select event_id from marts.usage_events order by event_id limit 7)",
            [built],
        )
        con.execute("create temp table fresh as select * from marts.usage_events order by event_id limit 5")
        con.execute("update fresh set event_id = 'new_' || event_id, refreshed_at = ?", [built])
        con.execute("insert into marts.usage_events select * from fresh")
    validate_all(pg, "postgres-incremental", as_of=settings().as_of, entities=["usage_event"], whole_history=False)
    decision = publish(pg, suite, "postgres-incremental")
    assert decision.published, decision.describe()
    assert decision.written == {"usage_events": "12 rows replaced", "feature_adoption_daily": "unchanged"}
    with pg.connect(read_only=True) as con:
        assert table_fingerprint(con, "serving.usage_events", ("event_id",)) == table_fingerprint(
            con, "marts.usage_events", ("event_id",)
        )


def test_the_scorecard_on_postgres_scores_as_on_duckdb(warehouses, audits, tmp_path):
    duck, pg = warehouses
    cards = [build_scorecard(w, tmp_path / w.target) for w in (duck, pg)]

    def scores(card: dict) -> dict:
        return {
            entity: (body["overall"]["score"], {d: v["score"] for d, v in body["dimensions"].items()})
            for entity, body in card["entities"].items()
            if entity != "usage_event"  # audited again on PostgreSQL alone (the incremental test)
        }

    assert scores(cards[1]) == scores(cards[0])
    assert (tmp_path / "postgres" / "scorecard.html").is_file()


def test_audit_and_publish_assets_run_on_postgres(warehouses, audits, tmp_path):
    _, pg = warehouses
    cfg = settings()
    resource = {
        "path": str(tmp_path / "unused.duckdb"),
        "reports_dir": str(tmp_path / "reports"),
        "as_of": cfg.as_of.isoformat(),
        "target": "postgres",
        "postgres_url": pg.postgres_url,
    }
    selection = [dg.AssetKey(["audit", "revenue"]), *(dg.AssetKey(["serving", t]) for t in SUITES["revenue"].publishes)]
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = defs.resolve_job_def("spine_job").execute_in_process(
            instance=instance,
            asset_selection=selection,
            raise_on_error=False,
            run_config={"resources": {"warehouse": {"config": resource}}},
        )
    assert result.success
    with pg.connect(read_only=True) as con:
        (status, decided_at) = con.execute(
            "select status, decided_at from quality.publications where run_id = ? and entity = 'revenue'",
            [result.run_id],
        ).fetchone()
        checks = con.execute(f"select count(*) from {RESULTS_TABLE} where run_id = ?", [result.run_id]).fetchone()
    assert status == "published" and isinstance(decided_at, datetime)
    assert checks == (len(SUITES["revenue"].checks),)
