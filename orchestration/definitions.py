"""The one place the Dagster definitions are assembled, from the per-domain modules:

ingestion (dlt) → transformation (dbt) → quality (Great Expectations, scorecard) → reports,
plus the jobs, schedule and sensor in `automation`.
"""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltResource

from orchestration.automation import daily_schedule, spine_job, usage_files_sensor, usage_ingestion_job
from orchestration.ingestion import ingestion_assets
from orchestration.quality import quality_checks, scorecard
from orchestration.resources import warehouse_from_env
from orchestration.transformation import dbt_cli, dbt_docs, dbt_models

defs = dg.Definitions(
    assets=[*ingestion_assets, dbt_models, dbt_docs, scorecard],
    asset_checks=quality_checks,
    jobs=[spine_job, usage_ingestion_job],
    schedules=[daily_schedule],
    sensors=[usage_files_sensor],
    resources={
        "dlt": DagsterDltResource(),
        "dbt": dbt_cli(),
        "warehouse": warehouse_from_env(),
    },
)
