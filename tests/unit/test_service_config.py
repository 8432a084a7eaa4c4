"""The service's configuration: its instance and workspace files as Dagster reads them, the
executor SPINE_EXECUTOR picks (the in-process one unless told), the Celery settings a run and
its workers share, and `spine service`'s answers to a missing or wrong setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2
import pytest
import yaml
from click.testing import CliRunner
from postgres_databases import POOLS_ON_POSTGRES

from data_spine.settings import PROJECT_ROOT, Settings
from orchestration.dagster_storage import SpineInstance
from orchestration.service.celery_steps import app_config, executor_config
from orchestration.service.instance_setup import INSTANCE_YAML, WORKSPACE_YAML, libpq_url, url_problem

pytestmark = pytest.mark.unit


def _settings(**env: str) -> Settings:
    return Settings.from_env({"SPINE_DATA_DIR": "/tmp/spine-unit", **env})


def test_the_service_instance_is_dagster_config_on_postgres_from_the_environment(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    config, instance_class = dagster_instance_config(str(tmp_path))  # validates against Dagster's schema

    assert instance_class is SpineInstance  # its event log keeps a connection per process
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "SPINE_DAGSTER_POSTGRES_URL"}}}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # Runs go side by side; what they must not do at once is a pool per step (one slot each).
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 1
    assert config["concurrency"]["pools"]["default_limit"] == 1
    limited = {limit["key"] for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limited == {"dagster/schedule_name", "dagster/sensor_name", "dagster/backfill"}
    assert config["run_launcher"] == {"module": "orchestration.run_recovery", "class": "LocalRunLauncher"}
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"] == {"enabled": False}


def test_the_project_instance_stays_sqlite_and_the_default():
    config = yaml.safe_load((PROJECT_ROOT / ".dagster_home" / "dagster.yaml").read_text())
    assert config["instance_class"]["class"] == "SpineInstance"
    assert "storage" not in config
    assert Settings.from_env({}).dagster_home == PROJECT_ROOT / ".dagster_home"
    assert Settings.from_env({}).executor == "in_process"


def test_the_workspace_asks_the_code_server_at_the_address_of_the_environment(monkeypatch):
    from dagster._core.workspace.config_schema import ensure_workspace_config

    monkeypatch.setenv("SPINE_CODE_SERVER_HOST", "code.internal")
    monkeypatch.setenv("SPINE_CODE_SERVER_PORT", "4270")
    config = ensure_workspace_config(yaml.safe_load(WORKSPACE_YAML.read_text()), str(WORKSPACE_YAML))
    (target,) = config["load_from"]
    assert target["grpc_server"] == {"host": "code.internal", "port": 4270, "location_name": "data_spine"}


def test_executor_settings():
    cfg = _settings(
        SPINE_EXECUTOR="Celery",
        SPINE_CELERY_BROKER_URL="amqp://spine:secret@broker:5672//",
        SPINE_CELERY_QUEUE="spine-prod",
    )
    assert (cfg.executor, cfg.celery_backend_url, cfg.celery_queue) == ("celery", "rpc://", "spine-prod")
    with pytest.raises(ValueError, match="SPINE_EXECUTOR='dask': choose one of in_process, celery"):
        _settings(SPINE_EXECUTOR="dask")

    shared = app_config(cfg)
    # A step's message is acknowledged once the step is done: a lost worker's step goes to another.
    assert shared["task_acks_late"] is True and shared["task_reject_on_worker_lost"] is False
    assert shared["task_default_queue"] == "spine-prod" and shared["worker_prefetch_multiplier"] == 1
    config = executor_config(cfg, {"require_upstream_step_success": False})
    assert config["broker"] == "amqp://spine:secret@broker:5672//" and config["config_source"] == shared


def test_the_definitions_run_steps_in_process_unless_told():
    from orchestration.automation import executor

    assert executor.name == "spine_executor"
    assert executor.executor_creation_fn.__name__ == "in_process_executor"
    assert executor.apply_config_mapping({}).value["config"] == {
        "retries": {"enabled": {}},
        "step_dependency_config": {"require_upstream_step_success": False},
    }


def test_spine_executor_celery_sends_every_job_to_the_workers():
    probe = (
        "import json\n"
        "from orchestration.automation import executor\n"
        "from orchestration.definitions import defs\n"
        "job = defs.resolve_job_def('spine_job')\n"
        "print(json.dumps([executor.executor_creation_fn.__name__, job.executor_def is executor,"
        " executor.apply_config_mapping({}).value['config']]))\n"
    )
    env = {**os.environ, "SPINE_EXECUTOR": "celery", "SPINE_CELERY_QUEUE": "spine-unit"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    creator, is_the_jobs, config = json.loads(done.stdout.strip().splitlines()[-1])
    assert creator == "spine_celery_executor" and is_the_jobs
    assert config["config_source"]["task_default_queue"] == "spine-unit"
    assert config["step_dependency_config"] == {"require_upstream_step_success": False}


def test_the_instance_url_must_name_psycopg2_and_a_database():
    assert "is not set" in url_problem(None)
    assert "write postgresql+psycopg2://" in url_problem("postgresql://spine@db:5432/dagster")
    assert "names no database" in url_problem("postgresql+psycopg2://spine@db:5432/")
    assert url_problem("postgresql+psycopg2://spine:pw@db:5432/dagster") is None
    assert libpq_url("postgresql+psycopg2://spine:pw@db:5432/dagster") == "postgresql://spine:pw@db:5432/dagster"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"DAGSTER_HOME": str(PROJECT_ROOT / ".dagster_home")}, "DAGSTER_HOME is the project's own instance"),
        ({"DAGSTER_HOME": "{service_home}"}, "SPINE_DAGSTER_POSTGRES_URL is not set"),
        (
            {"DAGSTER_HOME": "{service_home}", "SPINE_DAGSTER_POSTGRES_URL": "postgresql://x@127.0.0.1/d"},
            "write postgresql+psycopg2://",
        ),
    ],
)
def test_spine_service_says_what_setting_is_missing_and_writes_nothing(tmp_path, monkeypatch, env, said):
    from command_line.main import main
    from data_spine.settings import settings

    home = tmp_path / "service_home"
    project_instance = (PROJECT_ROOT / ".dagster_home" / "dagster.yaml").read_text()
    monkeypatch.delenv("SPINE_DAGSTER_POSTGRES_URL", raising=False)
    env = {name: value.format(service_home=home) for name, value in env.items()}
    try:
        result = CliRunner().invoke(main, ["service", "instance"], env=env, standalone_mode=False)
    finally:
        settings.cache_clear()  # the command read its own environment's
    assert said in str(result.exception), result.output
    assert not home.exists()
    assert (PROJECT_ROOT / ".dagster_home" / "dagster.yaml").read_text() == project_instance


POOLS_ON = """
import json
from orchestration.definitions import defs
graph = defs.resolve_asset_graph()
print(json.dumps({str(n.key.to_user_string()): sorted(n.pools or ()) for n in graph.asset_nodes}))
"""


@pytest.mark.parametrize("target", ["duckdb", "postgres"])
def test_steps_two_runs_must_not_do_at_once_claim_a_pool_of_one_on_each_target(target):
    """On DuckDB every warehouse step claims the one writer's pool; on PostgreSQL only a
    source's load, the dbt build and the roles' rebuild claim one (of their own), and the rest
    (audits, publishing, reports) claim none."""
    done = subprocess.run(
        [sys.executable, "-c", POOLS_ON],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SPINE_WAREHOUSE_TARGET": target},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pools = json.loads(done.stdout.strip().splitlines()[-1])
    if target == "duckdb":
        assert pools["stripe/customers"] == pools["dbt_docs"] == pools["audit/customer"] == ["duckdb_warehouse"]
    else:
        assert pools["stripe/customers"] == ["postgres_load_stripe"]
        assert pools["usage_events/events"] == ["postgres_load_usage_events"]
        assert pools["role_access"] == ["postgres_role_access"]
        assert not pools["audit/customer"] and not pools["serving/customers"] and not pools["scorecard"]
        assert {p for ps in pools.values() if ps for p in ps} == POOLS_ON_POSTGRES


def test_the_service_instance_stores_events_on_one_connection_per_process(tmp_path, monkeypatch):
    from celery_workers import fresh_database

    from orchestration.dagster_storage import PooledPostgresEventLogStorage
    from orchestration.service.instance_setup import libpq_url, open_instance, write_instance_yaml

    with fresh_database() as url:
        monkeypatch.setenv("SPINE_DAGSTER_POSTGRES_URL", url)
        write_instance_yaml(tmp_path)
        with open_instance(tmp_path) as instance:
            assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
            run = instance.create_run_for_job(_one_op_job())
            for n in range(40):
                instance.report_engine_event(f"event {n}", run)
            with psycopg2.connect(libpq_url(url)) as con, con.cursor() as cur:
                cur.execute("select count(*) from pg_stat_activity where datname = current_database()")
                (sessions,) = cur.fetchone()
            stored = instance.all_logs(run.run_id)
        assert len(stored) == 40
        # This test's own session and the one the pool kept open, which served every event (with
        # a connection per event, each would have ended: only this test's own would be left).
        assert 2 <= sessions <= 3


def _one_op_job():
    import dagster as dg

    @dg.op
    def nothing() -> None:
        pass

    @dg.job
    def one_op():
        nothing()

    return one_op
