"""Resources shared by the asset modules, configured from `data_spine.settings` when the
definitions load; a run may override any of them with run config (`spine run` passes the
sample company's as-of date and the local vendor APIs that way)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path

import dagster as dg
import duckdb

from data_spine.settings import Settings, settings
from data_spine.warehouse import Warehouse
from expectations.gx_engine import DuckDBSettings
from quality.alert_conditions import AlertStore
from quality.alert_delivery import JsonlLog, Slack, Webhook
from quality.source_monitors import VolumePolicy

# Every step that opens the DuckDB file claims a slot in this pool. The instance gives each
# pool one slot (`.dagster_home/dagster.yaml`), so two runs never hold the file at once:
# DuckDB allows a single writer process. PostgreSQL takes many writers: on that target the
# steps claim no such pool, and runs go side by side.
WAREHOUSE_POOL = "duckdb_warehouse" if settings().warehouse_target == "duckdb" else None


def exclusive_pool(work: str) -> str | None:
    """The pool of a step that two runs must not do at once even on PostgreSQL, `work` naming
    what they would collide on: a source's load (dlt's working folder and staging tables), the
    dbt build (each model's `__dbt_tmp` relation), the roles' rebuild (their schemas). On
    DuckDB it is the warehouse's pool, which already keeps every writer to one at a time."""
    return WAREHOUSE_POOL if WAREHOUSE_POOL else f"postgres_{work}"


# DuckDB's message when another process holds the warehouse file. The pool keeps our own runs
# apart, but any other process with the file open (a DuckDB shell, a notebook, a run of
# another deployment) holds DuckDB's lock: steps wait and try again rather than fail the run.
WAREHOUSE_LOCKED = "Could not set lock on file"


def retry_when_locked(context) -> dg.RetryRequested:
    """Try the step again later (how often and how far apart: SPINE_LOCK_RETRIES,
    SPINE_LOCK_RETRY_SECONDS)."""
    cfg = settings()
    context.log.warning(f"The warehouse is locked by another process; retrying in {cfg.lock_retry_seconds} s")
    return dg.RetryRequested(max_retries=cfg.lock_retries, seconds_to_wait=cfg.lock_retry_seconds)


def warehouse_locked(exc: BaseException) -> bool:
    """Whether DuckDB's lock error is behind `exc` (raised by DuckDB, or wrapped by dlt)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if WAREHOUSE_LOCKED in str(exc):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def waiting_for_the_warehouse(context) -> Iterator[None]:
    """Turn DuckDB's lock error into a retry of the step."""
    try:
        yield
    except duckdb.IOException as exc:
        if warehouse_locked(exc):
            raise retry_when_locked(context) from exc
        raise


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (the DuckDB file, or PostgreSQL: `target`) and the reporting context
    around it."""

    path: str
    reports_dir: str
    as_of: str | None = None  # ISO date the data describes; today when unset
    target: str = "duckdb"  # duckdb | postgres (SPINE_WAREHOUSE_TARGET)
    # libpq URL when the target is postgres; empty: SPINE_POSTGRES_URL of the process opening
    # it (so a password never enters run config, which Dagster stores with the run).
    postgres_url: str = ""

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.target, Path(self.path), self.postgres_url or settings().postgres_url)

    def connect(self, read_only: bool = False, **duckdb_config):
        """A connection to the warehouse, whichever it is (data_spine.warehouse)."""
        return self.warehouse.connect(read_only=read_only, **duckdb_config)

    def as_of_date(self) -> date:
        return date.fromisoformat(self.as_of) if self.as_of else datetime.now(UTC).date()

    def as_of_instant(self) -> datetime:
        """The time the data describes, as audits judge it (naive UTC): the start of the set
        as-of day (the sample company's history ends there), or now in production."""
        if self.as_of:
            return datetime.combine(date.fromisoformat(self.as_of), time())
        return datetime.now(UTC).replace(tzinfo=None)

    @property
    def file(self) -> Path:
        return Path(self.path)


class VendorApisResource(dg.ConfigurableResource):
    """Where a vendor's API is and how to sign in, per source, when a run is given them as run
    config (`spine run` passes its local stand-ins this way). Left empty, the connectors
    resolve both the dlt way (`.dlt/secrets.toml`, `SOURCES__<SOURCE>__*`), as in production."""

    stripe: dict[str, str] = {}
    hubspot: dict[str, str] = {}
    zendesk: dict[str, str] = {}

    def overrides(self, source: str) -> dict[str, str]:
        return dict(getattr(self, source, None) or {})


class QualityResource(dg.ConfigurableResource):
    """How audits and source monitors judge the data (see quality/README.md)."""

    volume_tolerance: float = 0.5  # anomaly when a count is further than this share from its average
    volume_window: int = 7  # readings averaged
    volume_min_readings: int = 3  # readings needed before judging
    duckdb_memory_limit: str = "1GB"  # for validating connections

    def volume_policy(self) -> VolumePolicy:
        return VolumePolicy(self.volume_tolerance, self.volume_window, self.volume_min_readings)

    def duckdb_settings(self) -> DuckDBSettings:
        return DuckDBSettings(memory_limit=self.duckdb_memory_limit)


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go: the JSONL log always, a JSON webhook and Slack when their URLs are set."""

    log_path: str
    webhook_url: str | None = None
    slack_webhook_url: str | None = None
    max_attempts: int = 4
    timeout_seconds: float = 5.0  # per attempt
    backoff_seconds: float = 0.5
    # A channel that is down delays a dispatch by at most this (attempts and waits together);
    # its deliveries stay owed for the next dispatch.
    max_wait_seconds: float = 10.0

    def channels(self) -> list:
        http = {
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "backoff_seconds": self.backoff_seconds,
            "max_wait_seconds": self.max_wait_seconds,
        }
        channels: list = [JsonlLog(Path(self.log_path))]
        if self.webhook_url:
            channels.append(Webhook(self.webhook_url, **http))
        if self.slack_webhook_url:
            channels.append(Slack(self.slack_webhook_url, **http))
        return channels

    def store(self) -> AlertStore:
        return AlertStore(Path(self.log_path).with_name("alert_state.json"))


def warehouse_from_env(cfg: Settings | None = None) -> WarehouseResource:
    cfg = cfg or settings()
    return WarehouseResource(
        path=str(cfg.warehouse),
        reports_dir=str(cfg.reports_dir),
        as_of=cfg.as_of.isoformat() if cfg.as_of else None,
        target=cfg.warehouse_target,
    )


def quality_from_env(cfg: Settings | None = None) -> QualityResource:
    q = (cfg or settings()).quality
    return QualityResource(
        volume_tolerance=q.volume_tolerance,
        volume_window=q.volume_window,
        volume_min_readings=q.volume_min_readings,
        duckdb_memory_limit=q.duckdb_memory_limit,
    )


def alerts_from_env(cfg: Settings | None = None) -> AlertsResource:
    a = (cfg or settings()).alerting
    return AlertsResource(
        log_path=str(a.log_path),
        webhook_url=a.webhook_url,
        slack_webhook_url=a.slack_webhook_url,
        max_attempts=a.max_attempts,
        timeout_seconds=a.timeout_seconds,
        max_wait_seconds=a.max_wait_seconds,
    )
