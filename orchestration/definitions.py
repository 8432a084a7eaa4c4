"""The one place the Dagster definitions are assembled, from the per-domain modules:

ingestion (dlt) and its source monitors → transformation (dbt) → audit (Great Expectations)
→ serving (write-audit-publish) → reports (scorecard, docs; the revenue report in
`reporting_assets`) → what each role may read (`access_assets`), plus the jobs, schedule and
sensors in `automation`, the alerts sensor in `alerts_sensor`, and the data-subject request
jobs and their deadline sensor in `privacy_jobs`, the retention job and its weekly schedule in
`retention_job`.
"""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltResource

from orchestration.access_assets import role_access
from orchestration.alerts_sensor import quality_alerts_sensor
from orchestration.automation import (
    daily_schedule,
    executor,
    scorecard_after_failure_sensor,
    scorecard_job,
    spine_job,
    usage_files_sensor,
    usage_ingestion_job,
)
from orchestration.console import concise_console_logger
from orchestration.dbt_manifest import dbt_cli
from orchestration.ingestion import ingestion_assets
from orchestration.privacy_jobs import (
    SubjectRequestResource,
    subject_access_job,
    subject_erasure_job,
    subject_request_deadline_sensor,
)
from orchestration.quality_assets import audit_assets, publish_assets, scorecard
from orchestration.reporting_assets import revenue_report
from orchestration.resources import VendorApisResource, alerts_from_env, quality_from_env, warehouse_from_env
from orchestration.retention_job import retention_job, weekly_retention
from orchestration.source_checks import source_monitors
from orchestration.transformation import dbt_docs, dbt_models

defs = dg.Definitions(
    assets=[
        *ingestion_assets,
        dbt_models,
        *audit_assets,
        *publish_assets,
        dbt_docs,
        scorecard,
        revenue_report,
        role_access,
    ],
    asset_checks=source_monitors,
    jobs=[spine_job, usage_ingestion_job, scorecard_job, subject_access_job, subject_erasure_job, retention_job],
    schedules=[daily_schedule, weekly_retention],
    sensors=[
        usage_files_sensor,
        quality_alerts_sensor,
        scorecard_after_failure_sensor,
        subject_request_deadline_sensor,
    ],
    executor=executor,
    loggers={"console": concise_console_logger},
    resources={
        "dlt": DagsterDltResource(),
        "vendor_apis": VendorApisResource(),
        "dbt": dbt_cli(),
        "warehouse": warehouse_from_env(),
        "quality": quality_from_env(),
        "alerts": alerts_from_env(),
        "request": SubjectRequestResource(),
    },
)


def spine_job_definition() -> dg.JobDefinition:
    """`spine_job` as a reconstructable target, for running it in this process with its own
    executor (`dg.execute_job(dg.reconstructable(spine_job_definition), ...)`)."""
    return defs.resolve_job_def("spine_job")


def scorecard_job_definition() -> dg.JobDefinition:
    return defs.resolve_job_def("scorecard_job")


def subject_access_job_definition() -> dg.JobDefinition:
    return defs.resolve_job_def("subject_access_job")


def subject_erasure_job_definition() -> dg.JobDefinition:
    return defs.resolve_job_def("subject_erasure_job")


def retention_job_definition() -> dg.JobDefinition:
    return defs.resolve_job_def("retention_job")


def usage_ingestion_job_definition() -> dg.JobDefinition:
    return defs.resolve_job_def("usage_ingestion_job")
