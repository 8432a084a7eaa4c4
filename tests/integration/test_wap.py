"""Write-audit-publish on the real pipeline: a mart broken on purpose is audited, held back and
alerted once, consumers keep the last good version, and the fix publishes and resolves.

The tests break marts on purpose, so each works on a copy of the `small` company's warehouse
with a Dagster instance of its own; the shared run stays as it was for the other tests."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from data_spine.settings import settings
from expectations.suites import SUITES
from orchestration.definitions import defs
from orchestration.resources import AlertsResource

CUSTOMER_TABLES = SUITES["customer"].publishes
AUDIT_AND_PUBLISH = [dg.AssetKey(["audit", "customer"]), *(dg.AssetKey(["serving", t]) for t in CUSTOMER_TABLES)]
DUPLICATE_ALERT = "blocking_check:customer:customer_id_unique"


@dataclass
class Private:
    warehouse: Path
    instance: dg.DagsterInstance

    def rows(self, schema: str, table: str = "customers") -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(f"select * from {schema}.{table} order by all").fetchall()

    def audit_and_publish(self):
        cfg = settings()
        warehouse = {
            "path": str(self.warehouse),
            "reports_dir": str(self.warehouse.parent / "reports"),
            "as_of": cfg.as_of.isoformat(),
        }
        return defs.resolve_job_def("spine_job").execute_in_process(
            instance=self.instance,
            asset_selection=AUDIT_AND_PUBLISH,
            raise_on_error=False,
            run_config={"resources": {"warehouse": {"config": warehouse}}},
        )


@pytest.fixture
def private(first_run, tmp_path):
    """A copy of the shared run's warehouse, and a Dagster instance of its own."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(settings().warehouse, warehouse)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield Private(warehouse, instance)


def _sensor_ticks(instance, alerts: AlertsResource, times: int) -> None:
    sensor = defs.resolve_sensor_def("quality_alerts_sensor")
    for _ in range(times):
        sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources={"alerts": alerts}))


def _alerts_about(alerts: AlertsResource, key: str) -> list[dict]:
    lines = Path(alerts.log_path).read_text().splitlines()
    return [a for a in map(json.loads, lines) if a["key"] == key]


def test_a_broken_mart_is_held_back_alerted_once_and_published_once_fixed(private, tmp_path):
    instance, warehouse = private.instance, private.warehouse
    alerts = AlertsResource(log_path=str(tmp_path / "alerts.jsonl"))
    good = private.rows("serving")
    assert good == private.rows("marts")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        [(serving_run,)] = con.execute(
            "select arg_max(run_id, decided_at) from quality.publications "
            "where entity = 'customer' and status = 'published'"
        ).fetchall()

    # Someone's model change duplicates a customer.
    with duckdb.connect(str(warehouse)) as con:
        [(victim,)] = con.execute("select min(customer_id) from marts.customers").fetchall()
        con.execute("insert into marts.customers select * from marts.customers where customer_id = ?", [victim])

    held = private.audit_and_publish()
    assert not held.success
    checks = {c.check_name: c for c in held.get_asset_check_evaluations()}
    assert not checks["uniqueness"].passed and checks["uniqueness"].severity == dg.AssetCheckSeverity.ERROR
    [failure] = held.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert failure.step_key == "publish_customer"
    assert "customer: audit FAILED, not published" in message and "customer_id_unique" in message
    assert f"serving keeps the version published by run {serving_run}" in message
    assert private.rows("serving") == good, "consumers still read the last good customers"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        decision = con.execute(
            "select status, serving_run_id, blocking_failures from quality.publications where run_id = ?", [held.run_id]
        ).fetchone()
    assert decision[:2] == ("held", serving_run) and "customer_id_unique" in json.loads(decision[2])

    _sensor_ticks(instance, alerts, times=3)
    [fired] = _alerts_about(alerts, DUPLICATE_ALERT)
    assert (fired["status"], fired["severity"], fired["owner"]) == ("firing", "critical", "Data Engineering")
    assert fired["how_many"] == f"2 of {len(good) + 1:,} rows"
    assert fired["details"]["sample"] == [{"customer_id": victim}]

    # The model is fixed: the next build has each customer once.
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "delete from marts.customers where rowid = (select max(rowid) from marts.customers where customer_id = ?)",
            [victim],
        )

    fixed = private.audit_and_publish()
    assert fixed.success
    assert private.rows("serving") == private.rows("marts") == good
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select status from quality.publications where run_id = ?", [fixed.run_id]).fetchone() == (
            "published",
        )

    _sensor_ticks(instance, alerts, times=2)
    assert [a["status"] for a in _alerts_about(alerts, DUPLICATE_ALERT)] == ["firing", "resolved"]


def test_marts_rebuilt_after_their_audit_are_not_published(private):
    """Runs interleave step by step: another run may rebuild a mart between this run's audit
    and its publishing step. What was audited is what gets published, or nothing."""
    from quality.publishing import NotAudited, publish

    audited = private.audit_and_publish()
    assert audited.success
    suite, warehouse = SUITES["customer"], private.warehouse
    before = private.rows("serving")
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "update marts.customers set company_name = company_name || ' (renamed)' "
            "where customer_id = (select min(customer_id) from marts.customers)"
        )
    try:
        decision = publish(warehouse, suite, audited.run_id)
        assert not decision.published and decision.blocking_failures == []
        assert f"customers changed after the audit of run {audited.run_id}" in decision.describe()
        assert private.rows("serving") == before
        # A run without an audit of its own cannot publish at all.
        with pytest.raises(NotAudited, match="has no audit of it"):
            publish(warehouse, suite, "a-run-that-audited-nothing")
    finally:
        with duckdb.connect(str(warehouse)) as con:
            con.execute("update marts.customers set company_name = replace(company_name, ' (renamed)', '')")
    # Re-executing a failed run from its failure continues it: the parent's audit counts.
    again = publish(warehouse, suite, "re-execution-of-it", audit_runs=(audited.run_id,))
    assert again.published and private.rows("serving") == before


def test_an_incremental_publish_writes_only_what_changed_and_readers_see_one_version(private):
    """The event-grain entity: dbt rewrote some events and added others (its incremental run),
    and changed the adoption mart. Publishing replaces just those events by key, leaves an
    unchanged table alone, and a reader meanwhile sees the old version or the new, never a mix."""
    import threading

    from expectations.runner import table_fingerprint
    from quality.publishing import publish

    suite, warehouse = SUITES["usage_event"], private.warehouse
    selection = [dg.AssetKey(["audit", "usage_event"]), *(dg.AssetKey(["serving", t]) for t in suite.publishes)]

    def audit():
        cfg = settings()
        config = {"path": str(warehouse), "reports_dir": str(warehouse.parent / "reports"), "as_of": str(cfg.as_of)}
        result = defs.resolve_job_def("spine_job").execute_in_process(
            instance=private.instance,
            asset_selection=selection[:1],
            raise_on_error=False,
            run_config={"resources": {"warehouse": {"config": config}}},
        )
        assert result.success
        return result.run_id

    first = publish(warehouse, suite, audit())
    assert first.published
    with duckdb.connect(str(warehouse)) as con:
        (events,) = con.execute("select count(*) from marts.usage_events").fetchone()
        # What an incremental dbt run does: rewrite a few events, add a few.
        con.execute(
            "update marts.usage_events set customer_id = null, refreshed_at = now()::timestamp "
            "where event_id in (select event_id from marts.usage_events order by event_id limit 7)"
        )
        con.execute(
            "insert into marts.usage_events select * replace ('new_' || event_id as event_id, "
            "now()::timestamp as refreshed_at) from marts.usage_events order by event_id limit 5"
        )
        old = (table_fingerprint(con, "serving.usage_events"), table_fingerprint(con, "serving.feature_adoption_daily"))
    run_id = audit()

    seen, stop = set(), threading.Event()

    def read() -> None:
        with duckdb.connect(str(warehouse)) as con:
            while not stop.is_set():
                con.execute("begin transaction")
                seen.add(
                    (
                        table_fingerprint(con, "serving.usage_events"),
                        table_fingerprint(con, "serving.feature_adoption_daily"),
                    )
                )
                con.execute("commit")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        decision = publish(warehouse, suite, run_id)
    finally:
        stop.set()
        reader.join()
    assert decision.published, decision.describe()
    assert decision.written == {"usage_events": "12 rows replaced", "feature_adoption_daily": "unchanged"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        new = (table_fingerprint(con, "serving.usage_events"), table_fingerprint(con, "serving.feature_adoption_daily"))
        assert new[0] == table_fingerprint(con, "marts.usage_events")
        assert con.execute("select count(*) from serving.usage_events").fetchone() == (events + 5,)
    assert private.rows("serving", "usage_events") == private.rows("marts", "usage_events")
    assert seen and seen <= {old, new}, "a reader saw a version that was neither the old nor the new"
