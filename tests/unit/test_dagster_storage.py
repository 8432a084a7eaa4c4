"""The instance's storage (orchestration/dagster_storage.py): the project's dagster.yaml selects
it, and what it writes is Dagster's own SQLite layout, read the same by Dagster's storage."""

from __future__ import annotations

import shutil

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage

from data_spine.settings import PROJECT_ROOT
from orchestration.dagster_storage import PooledSqliteEventLogStorage, SpineInstance


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="numbers")])
def numbers():
    yield dg.MaterializeResult(metadata={"rows": 3})
    yield dg.AssetCheckResult(check_name="positive", passed=True)


def _instance(home) -> dg.DagsterInstance:
    """The instance of a folder of its own (not DAGSTER_HOME: its storage is the folder's)."""
    shutil.copyfile(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def test_runs_stored_with_open_connections_read_the_same_with_dagsters_storage(tmp_path):
    with _instance(tmp_path) as instance:
        assert isinstance(instance, SpineInstance)
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        runs = [dg.materialize([numbers], instance=instance).run_id for _ in range(2)]
        mine = {run: len(instance.all_logs(run)) for run in runs}
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("numbers"), "positive")]
        )

    plain = SqliteEventLogStorage(str(tmp_path / "history" / "runs"))
    assert {run: len(plain.get_logs_for_run(run)) for run in runs} == mine
    assert all(n > 10 for n in mine.values())
    latest = plain.get_latest_materialization_events([dg.AssetKey("numbers")])[dg.AssetKey("numbers")]
    assert latest.run_id == runs[-1]
    [execution] = check.values()
    assert execution.run_id == runs[-1] and execution.status.value == "SUCCEEDED"


def test_only_a_few_databases_stay_open(tmp_path):
    with _instance(tmp_path) as instance:
        for _ in range(9):  # one more than the engines kept open
            dg.materialize([numbers], instance=instance)
        storage = instance.event_log_storage
        assert len(storage._engines) <= 8
        assert "index" in storage._engines  # the cross-run index, used by every event
        assert len(instance.get_runs()) == 9
