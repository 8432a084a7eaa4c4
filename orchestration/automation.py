"""Jobs, the executor they run on, the daily schedule and the sensors that start runs."""

from pathlib import Path

import dagster as dg

from connectors.usage_events import PATTERN
from data_spine.settings import settings
from expectations.suites import SUITES
from orchestration.service.celery_steps import executor_config, spine_celery_executor

# A step runs once its own inputs are there even when another step of the run failed: a dbt
# model that fails holds back only the entities built from it, while the others are audited
# and published.
STEP_DEPENDENCIES = {"require_upstream_step_success": False}

# By default one process runs a run's steps one after another (the DuckDB warehouse takes one
# writer at a time anyway). SPINE_EXECUTOR=celery sends each step to the Celery workers of the
# service instead (README.md, "Running as a service"), with the same rule for failed steps.
executor = (
    spine_celery_executor.configured(executor_config(settings(), STEP_DEPENDENCIES), name="spine_executor")
    if settings().executor == "celery"
    else dg.in_process_executor.configured({"step_dependency_config": STEP_DEPENDENCIES}, name="spine_executor")
)

spine_job = dg.define_asset_job(
    name="spine_job",
    selection=dg.AssetSelection.all(),
    description="Everything: ingest all sources, build the dbt models, validate, publish reports.",
)

usage_ingestion_job = dg.define_asset_job(
    name="usage_ingestion_job",
    selection=dg.AssetSelection.groups("ingestion") & dg.AssetSelection.key_prefixes(["usage_events"]),
    description="Load newly landed usage-event files.",
)

# On a scorecard run made for a failed run of spine_job: that run's id.
AFTER_RUN_TAG = "spine/after_run"

scorecard_job = dg.define_asset_job(
    name="scorecard_job",
    selection=dg.AssetSelection.assets("scorecard"),
    description="Write the data-quality scorecard from what the warehouse holds now.",
)

# The day of the week the daily run also tests the incremental models' whole history.
FULL_HISTORY_TESTS_WEEKDAY = 6  # Sunday


@dg.schedule(
    name="daily_spine",
    job=spine_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The spine every morning at 06:00 UTC: loads, models, audits and publishes what the day "
    "brought; on Sundays the data tests of the incremental models, and the audit of the usage events, check "
    "their whole history.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    weekly = context.scheduled_execution_time.weekday() == FULL_HISTORY_TESTS_WEEKDAY
    return dg.RunRequest(
        run_config={"ops": {"dbt_models": {"config": {"full_history_tests": weekly}}}},
        tags={"spine/tests": "full history" if weekly else "written this run"},
    )


def newest_landing_mtime(folder: Path) -> tuple[int, int]:
    """(newest modification time in ns, number of files) of the collector's files."""
    files = list(folder.glob(PATTERN)) if folder.is_dir() else []
    return (max((f.stat().st_mtime_ns for f in files), default=0), len(files))


@dg.sensor(
    name="usage_files_sensor",
    job=usage_ingestion_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts usage ingestion when new event files land in the collector's folder.",
)
def usage_files_sensor(context: dg.SensorEvaluationContext):
    folder = settings().landing_dir
    newest, count = newest_landing_mtime(folder)
    last = int(context.cursor) if context.cursor else 0
    if newest <= last:
        return dg.SkipReason(f"no new files in {folder} ({count} present)")
    context.update_cursor(str(newest))
    return dg.RunRequest(run_key=f"usage-files-{newest}", tags={"trigger": "landing_folder"})


def scorecard_missing(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a finished run of `spine_job` left the scorecard unwritten (a failure upstream of
    every audit, a dbt model, stops the step that writes it) while there is an audit to score."""

    if not any(instance.get_latest_materialization_event(dg.AssetKey(["audit", e])) for e in SUITES):
        return False  # nothing was ever audited: there is no scorecard to write yet
    latest = instance.get_latest_materialization_event(dg.AssetKey("scorecard"))
    if latest is None:
        return True
    if latest.run_id == run_id:
        return False
    # Written after it already (by `spine run`, or this sensor for another process's run)?
    writer = instance.get_run_by_id(latest.run_id)
    return not (writer and writer.tags.get(AFTER_RUN_TAG) == run_id)


@dg.run_failure_sensor(
    name="scorecard_after_failure_sensor",
    monitored_jobs=[spine_job],
    request_job=scorecard_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes the scorecard after a run of spine_job that failed before writing it, so the report "
    "always shows what was held back and why.",
)
def scorecard_after_failure_sensor(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    if scorecard_missing(context.instance, run.run_id):
        return dg.RunRequest(run_key=f"scorecard-after-{run.run_id}", tags={AFTER_RUN_TAG: run.run_id})
    return dg.SkipReason(f"run {run.run_id} wrote its scorecard")
