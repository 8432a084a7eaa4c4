"""Retention as a Dagster job: what `privacy/retention.yml` has expired, anonymised every week.

    find_expired_data ─► anonymise_expired_data

Both steps hold the warehouse pool. The first reads, as of the `warehouse` resource's as-of
date, what has expired and reports counts; the second finds it again and anonymises it
(`privacy.retention.run`: every table in one transaction, the file compacted, the landing
files, the roles' files, then the scan). Only counts pass between the steps and reach metadata
and logs: a person's email or id never enters Dagster's storage. A week with nothing expired
only reads the warehouse, and writes nothing.

The schedule runs on Sundays at 07:00 UTC, after the daily run (06:00); if that run still holds
the warehouse, the steps wait for the pool.
"""

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from data_spine.settings import Settings, settings
from data_spine.warehouse import duckdb_only
from orchestration.resources import WAREHOUSE_POOL, WarehouseResource, waiting_for_the_warehouse
from privacy import retention

RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)


class RetentionConfig(dg.Config):
    # Another policy file than privacy/retention.yml (a test's shortened clocks).
    policy: str = ""


def _settings(warehouse: WarehouseResource) -> Settings:
    return dataclasses.replace(settings(), warehouse=warehouse.file)


def _policy(path: str) -> list[retention.Rule]:
    return retention.load_policy(Path(path) if path else None)


def _counts_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    people = summary.get("people") or {}
    return {
        "as_of": summary["as_of"],
        "customers": summary.get("customers", 0),
        "emails": people.get("email", 0),
        "person_ids": sum(n for kind, n in people.items() if kind != "email"),
        "by_rule": dg.MetadataValue.json(summary.get("rules") or {}),
    }


@dg.op(
    pool=WAREHOUSE_POOL,
    retry_policy=RETRY,
    description="Find, as of the warehouse's as-of date, whose personal data privacy/retention.yml has expired "
    "(counts only).",
)
def find_expired_data(
    context: dg.OpExecutionContext, config: RetentionConfig, warehouse: WarehouseResource
) -> dict[str, Any]:
    if problem := duckdb_only(warehouse.warehouse, "Retention"):
        raise dg.Failure(problem, allow_retries=False)
    policy = _policy(config.policy)  # an invalid policy fails here, before anything is read
    as_of = warehouse.as_of_date()
    with waiting_for_the_warehouse(context), duckdb.connect(str(warehouse.file), read_only=True) as con:
        found = retention.expired(con, policy, as_of)
    summary = {"as_of": as_of.isoformat(), "policy": config.policy, **retention.describe(found)}
    context.add_output_metadata(_counts_metadata(summary))
    people = sum(summary["people"].values())
    context.log.info(f"as of {as_of}: {summary['customers']} customer(s), {people} email(s) and id(s) expired")
    return summary


@dg.op(
    pool=WAREHOUSE_POOL,
    retry_policy=RETRY,
    description="Anonymise what expired in every store (aggregates kept), compact the warehouse, rebuild the roles' "
    "files, and verify by a scan that none of the people's emails and ids is left.",
)
def anonymise_expired_data(
    context: dg.OpExecutionContext, expired: dict[str, Any], warehouse: WarehouseResource
) -> dict[str, Any]:
    as_of = date.fromisoformat(expired["as_of"])
    try:
        # Also when nothing expired: a run stopped half-way left people pending (cheap otherwise).
        with waiting_for_the_warehouse(context):
            outcome = retention.run(_settings(warehouse), as_of, _policy(expired["policy"]))
    except retention.RetentionNotVerified as e:
        # A verification that failed fails again until something else changes; the people stay
        # pending for the next run.
        raise dg.Failure(str(e), allow_retries=False) from e
    outcome["policy"] = expired["policy"]
    if outcome["verified"] is None:
        context.log.info(f"as of {as_of}: nothing expired")
    else:
        context.log.info(
            f"as of {as_of}: {outcome['customers']} customer(s), {sum(outcome['rows'].values())} row(s) in "
            f"{len(outcome['rows'])} table(s) and {outcome['landing_files']} landing file(s) anonymised; verified"
        )
    context.add_output_metadata(
        {
            **_counts_metadata(outcome),
            "rows_by_table": dg.MetadataValue.json(outcome.get("rows") or {}),
            "landing_files": outcome.get("landing_files", 0),
            "compacted": str(outcome.get("compacted") or "no"),
            "verified": dg.MetadataValue.json(outcome.get("verified")),
        }
    )
    return outcome


@dg.job(
    description="Retention: anonymise the personal data privacy/retention.yml has expired (7 years after a "
    "customer churned; 2 years after a product user's last event), aggregates kept, verified by a scan."
)
def retention_job():
    anonymise_expired_data(find_expired_data())


weekly_retention = dg.ScheduleDefinition(
    name="weekly_retention",
    job=retention_job,
    cron_schedule="0 7 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retention every Sunday at 07:00 UTC, after the daily run.",
)
