"""The Dagster code location: it loads, and its graph, automation and pools are what we expect.

The asset graph is compared with `tests/snapshots/asset_graph.json`. After an intended change
to the graph, regenerate the snapshot with `SPINE_UPDATE_SNAPSHOTS=1 python -m pytest
tests/unit/test_definitions.py` and review the diff like code.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from expectations.suites import SUITES
from orchestration.definitions import defs
from orchestration.freshness_policies import window_of
from orchestration.resources import WAREHOUSE_POOL

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "asset_graph.json"


def _graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(check.name for check in node.check_keys),
        }
    return {"assets": assets}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_matches_snapshot():
    actual = _graph_snapshot()
    if os.environ.get("SPINE_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert actual == expected


def test_every_layer_is_in_the_graph():
    graph = defs.resolve_asset_graph()
    groups = {node.group_name for node in graph.asset_nodes}
    assert {"ingestion", "staging", "intermediate", "marts", "audit", "serving", "reports"} <= groups
    for entity, suite in SUITES.items():
        audit = dg.AssetKey(["audit", entity])
        # One check per quality dimension the suite covers, on the audit of the entity.
        assert {c.name for c in graph.get(audit).check_keys} == set(suite.dimensions)
        for table in suite.publishes:
            # Consumers' tables wait for the audit of their entity.
            assert audit in graph.get(dg.AssetKey(["serving", table])).parent_keys
            assert any(
                c.name.startswith("unique") or c.name.startswith("not_null")
                for c in graph.get(dg.AssetKey(["marts", table])).check_keys
            ), table
    assert {dg.AssetKey(["audit", e]) for e in SUITES} == set(graph.get(dg.AssetKey("scorecard")).parent_keys)


def test_raw_assets_have_source_monitors():
    graph = defs.resolve_asset_graph()
    for node in graph.asset_nodes:
        if node.group_name == "ingestion":
            assert {"volume", "schema_drift"} <= {c.name for c in node.check_keys}, node.key


def test_raw_sources_and_marts_have_freshness_policies():
    graph = defs.resolve_asset_graph()
    raw = [n for n in graph.asset_nodes if n.group_name == "ingestion"]
    assert {n.key.path[0] for n in raw} == {"stripe", "hubspot", "zendesk", "usage_events"}
    for node in raw + [n for n in graph.asset_nodes if n.group_name == "marts"]:
        window = window_of(node.key)
        assert node.freshness_policy is not None and window is not None, node.key
        assert node.freshness_policy.fail_window.to_timedelta() == window.fail, node.key


def test_every_warehouse_step_claims_the_duckdb_pool():
    """One slot in this pool is what keeps two runs from opening the DuckDB file at once."""
    for assets_def in defs.assets or []:
        assert assets_def.node_def.pool == WAREHOUSE_POOL, assets_def.node_def.name
    for checks_def in defs.asset_checks or []:
        assert checks_def.node_def.pool == WAREHOUSE_POOL, checks_def.node_def.name


def test_alerts_sensor_runs_by_default():
    sensor = defs.resolve_sensor_def("quality_alerts_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 60


def test_daily_schedule_runs_everything():
    schedule = defs.resolve_schedule_def("daily_spine")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "spine_job"
    job = defs.resolve_job_def("spine_job")
    assert set(job.asset_layer.executable_asset_keys) == set(defs.resolve_all_asset_keys())


@pytest.mark.parametrize(("day", "full_history"), [("2026-12-05", False), ("2026-12-06", True)])
def test_daily_schedule_tests_the_whole_history_on_sundays(day, full_history):
    """Saturday's run tests what it wrote; Sunday's the incremental models' whole history. The
    run config it asks for is one the job accepts."""
    from datetime import datetime

    schedule = defs.resolve_schedule_def("daily_spine")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime.fromisoformat(f"{day}T06:00:00+00:00")
        )
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.run_config == {"ops": {"dbt_models": {"config": {"full_history_tests": full_history}}}}
    job = defs.resolve_job_def("spine_job")
    assert job.run_config_schema.config_type is not None
    config = dg.validate_run_config(job, request.run_config)
    assert config["ops"]["dbt_models"]["config"]["full_history_tests"] is full_history


def test_a_full_refresh_rebuilds_the_incremental_models_and_tests_every_row():
    from orchestration.transformation import DbtBuildConfig

    assert (DbtBuildConfig().build_args(), DbtBuildConfig().vars()) == ([], {})
    full = DbtBuildConfig(full_refresh=True)
    assert (full.build_args(), full.vars()) == (["--full-refresh"], {"full_history_tests": True})
    weekly = DbtBuildConfig(full_history_tests=True)
    assert (weekly.build_args(), weekly.vars()) == ([], {"full_history_tests": True})


def test_sensor_requests_a_run_only_when_new_files_land(tmp_path, set_env):
    set_env(SPINE_LANDING_DIR=str(tmp_path))
    sensor = defs.resolve_sensor_def("usage_files_sensor")
    assert sensor.job_name == "usage_ingestion_job"

    with dg.instance_for_test() as instance:
        empty = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert empty.run_requests == [] and "no new files" in empty.skip_message

        (tmp_path / "events-2026-11-21.jsonl.gz").write_bytes(b"")
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert len(first.run_requests) == 1
        assert first.cursor

        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert again.run_requests == []

        newer = tmp_path / "events-2026-11-22.jsonl.gz"
        newer.write_bytes(b"")
        stamp = int(first.cursor) // 1_000_000_000 + 5
        os.utime(newer, (stamp, stamp))
        later = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert len(later.run_requests) == 1
        assert later.run_requests[0].run_key != first.run_requests[0].run_key


@pytest.mark.parametrize("job_name", ["spine_job", "usage_ingestion_job"])
def test_jobs_resolve(job_name):
    job = defs.resolve_job_def(job_name)
    assert job.asset_layer.executable_asset_keys


def test_every_asset_can_be_selected_alone_as_the_ui_offers_it():
    """The UI's "Materialize" on one asset builds a job of that asset alone (with its checks):
    no definition may refuse a subset (`DagsterInvalidSubsetError`)."""
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    selectable = [key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable]
    assert len(selectable) > 90
    for key in selectable:
        subset = job.get_subset(asset_selection={key})
        assert subset.asset_layer.selected_asset_keys == {key}, key


def test_the_dbt_resource_opens_no_adapter_in_the_step():
    """The resource leaves out dagster-dbt's in-process adapter by overriding the method that
    opens it: the method must still be dagster-dbt's (an upgrade that renames it would bring
    the cost back silently), and the resource must be the one the assets use."""
    from dagster_dbt import DbtCliResource

    from orchestration.dbt_manifest import SpineDbtCliResource

    assert {"_initialize_dbt_core_adapter", "_get_unique_target_path", "_cli_version"} <= set(vars(DbtCliResource))
    resource = defs.resources["dbt"]
    assert isinstance(resource, SpineDbtCliResource)
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_the_folders_of_old_dbt_commands_are_removed_and_nothing_else(tmp_path, monkeypatch):
    from orchestration import dbt_manifest
    from orchestration.dbt_manifest import prune_invocations

    week_ago = time.time() - 8 * 86_400
    old = [tmp_path / "dbt_models-0fe7bd4-ea5391e", tmp_path / "5b298e3"]
    kept = [tmp_path / "dbt_models-1e09efe-d431419", tmp_path / ".parse-123", tmp_path / "compiled"]
    for folder in old + kept:
        folder.mkdir()
        (folder / "run_results.json").write_text("{}")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "parse_states").mkdir()
    for name in ("0fe7bd4ea5391e00", "1e09efed431419aa"):
        (tmp_path / "parse_states" / f"{name}.msgpack").write_bytes(b"state")
    old.append(tmp_path / "parse_states" / "0fe7bd4ea5391e00.msgpack")
    for path in [*old, *kept[1:], tmp_path / "manifest.json"]:
        os.utime(path, (week_ago, week_ago))
    assert sorted(prune_invocations(tmp_path)) == sorted(old)
    assert sorted(tmp_path.iterdir()) == sorted([*kept, tmp_path / "manifest.json", tmp_path / "parse_states"])
    assert [p.name for p in (tmp_path / "parse_states").iterdir()] == ["1e09efed431419aa.msgpack"]
    # The resource prunes the folder dagster-dbt puts each command's folder in.
    pruned = []
    monkeypatch.setattr(dbt_manifest, "prune_invocations", pruned.append)
    path = dbt_manifest.dbt_cli()._get_unique_target_path(context=None)
    assert pruned == [dbt_manifest.DBT_DIR / "target"] and path.parent.name == "target"


def test_a_second_dbt_command_on_another_warehouse_starts_from_the_parse_state_of_the_first(tmp_path, set_env):
    """dbt parses the whole project when the profile's warehouse is not the one the prepared
    parse state was made for; the next command on that warehouse, with the same vars, starts
    from the state the first one left, and a command on a third warehouse does not."""
    from orchestration.dbt_manifest import dbt_cli, keep_parse_state, parse_state, vars_args

    args = ["parse", *vars_args({"as_of_date": "2026-11-21"})]
    made = []

    def command(warehouse: str):
        set_env(SPINE_WAREHOUSE=str(tmp_path / warehouse))
        made.append(parse_state(args, dbt_cli().target))
        invocation = dbt_cli().cli(args).wait()
        keep_parse_state(invocation)
        return (invocation.target_path / "dbt.log").read_text()

    try:
        first, second, third = command("a.duckdb"), command("a.duckdb"), command("b.duckdb")
        assert made[0] == made[1] != made[2] and made[0].exists() and made[2].exists()
        assert "Unable to do partial parsing because profile has changed" in first
        assert "Unable to do partial parsing" not in second and "Partial parsing enabled" in second
        assert "Unable to do partial parsing because profile has changed" in third
        # Other vars are another state (dbt would parse again for them).
        assert parse_state(["build", *vars_args({"as_of_date": "2026-11-22"})], "dev") != made[0]
    finally:
        for state in made:
            state.unlink(missing_ok=True)
