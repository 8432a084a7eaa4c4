"""Jobs, the daily schedule and the landing-folder sensor."""

from pathlib import Path

import dagster as dg

from connectors.usage_events import PATTERN
from data_spine.config import settings

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

daily_schedule = dg.ScheduleDefinition(
    name="daily_spine",
    job=spine_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Full refresh of the spine every morning at 06:00 UTC.",
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
