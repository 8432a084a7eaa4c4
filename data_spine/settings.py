"""Every setting of the platform, typed, with its default, read from the environment once.

This module is the floor of the project: it imports nothing from it. Each layer receives the
values it needs (the Dagster resources are configured from `settings()` when the definitions
load, the CLI passes run config, the connectors take a `Settings`); nothing writes the
environment to hand a value from one layer to another. Credentials of the vendor APIs are not
here: they are dlt configuration (`.dlt/secrets.toml` or `SOURCES__<SOURCE>__*`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and how hard a delivery tries (see quality/alert_delivery.py)."""

    log_path: Path
    webhook_url: str | None = None
    slack_webhook_url: str | None = None
    max_attempts: int = 4
    timeout_seconds: float = 5.0  # per attempt
    # A channel that is down delays a dispatch by at most this (attempts and waits together).
    max_wait_seconds: float = 10.0


@dataclass(frozen=True)
class QualitySettings:
    """How audits and source monitors judge the data (see quality/README.md)."""

    volume_tolerance: float = 0.5  # anomaly when a count is further than this share from its average
    volume_window: int = 7  # readings averaged
    volume_min_readings: int = 3  # readings needed before judging
    # Memory a validating DuckDB connection may use; the validations run while nothing else
    # holds the warehouse, so a fixed share keeps a large table from taking the machine.
    duckdb_memory_limit: str = "1GB"


# The warehouse the whole pipeline writes to (SPINE_WAREHOUSE_TARGET): the embedded DuckDB file,
# or a PostgreSQL database (SPINE_POSTGRES_URL) that several processes and machines share.
WAREHOUSE_TARGETS = ("duckdb", "postgres")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/data_spine"

# What runs a job's steps (SPINE_EXECUTOR): one after another in the run's own process, or each
# as a Celery task on whichever worker of the queue takes it (README.md, "Running as a service").
EXECUTORS = ("in_process", "celery")
# RabbitMQ's own account on this machine; a deployment names its broker, with its password, in
# the environment.
DEFAULT_CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    warehouse: Path
    landing_dir: Path
    dagster_home: Path
    preset: str = "small"
    seed: int = 42
    as_of: date | None = None
    # Known defects in the sample company: `default`, `none`, or `name=rate,...` overrides
    # (see sample_company.defects.DefectRates.parse).
    defects: str = "default"
    # How vendor-realistic the sample company looks: `default` or `name=value,...` (see
    # sample_company.variants.Variant.parse).
    variant: str = "default"
    vendor_api_port: int = 8765
    # How often, and how many seconds apart, a step tries again while another process holds
    # the warehouse file.
    lock_retries: int = 6
    lock_retry_seconds: float = 5.0
    quality: QualitySettings = field(default_factory=QualitySettings)
    alerts: AlertSettings | None = None
    # The key of every keyed hash of personal data (pseudonymous ids, the suppression list, the
    # audit of data-subject requests). Unset, one is generated once into the privacy folder
    # (privacy/keys.py): a hash without a secret key can be reversed by hashing guessed emails.
    privacy_key: str | None = None
    warehouse_target: str = "duckdb"
    # libpq URL of the PostgreSQL warehouse; a password belongs in the environment (or
    # PGPASSWORD / ~/.pgpass), never in a file under git.
    postgres_url: str = DEFAULT_POSTGRES_URL
    executor: str = "in_process"
    celery_broker_url: str = DEFAULT_CELERY_BROKER_URL
    # Where a worker sends a step's events back to the run that asked for it: `rpc://` sends them
    # through the broker itself, so nothing else has to run.
    celery_backend_url: str = "rpc://"
    # The Celery queue the steps are sent to and the workers take them from; deployments (and
    # test sessions) sharing one broker keep apart by naming their own.
    celery_queue: str = "dagster"
    # libpq URL of the database of the service's Dagster instance (the instance reads the same
    # variable: orchestration/service/dagster.yaml); only the `spine service` commands need it.
    dagster_postgres_url: str | None = None

    def __post_init__(self):
        if self.warehouse_target not in WAREHOUSE_TARGETS:
            raise ValueError(
                f"SPINE_WAREHOUSE_TARGET={self.warehouse_target!r}: choose one of {', '.join(WAREHOUSE_TARGETS)}"
            )
        if self.executor not in EXECUTORS:
            raise ValueError(f"SPINE_EXECUTOR={self.executor!r}: choose one of {', '.join(EXECUTORS)}")

    @property
    def sources_dir(self) -> Path:
        """State of the simulated SaaS systems, served by the local vendor APIs."""
        return self.data_dir / "sources"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def dlt_dir(self) -> Path:
        """dlt's pipeline working folders (state, pending load packages)."""
        return self.data_dir / "dlt"

    @property
    def privacy_dir(self) -> Path:
        """Pending data-subject requests, exports made for them, the generated privacy key."""
        return self.data_dir / "privacy"

    @property
    def access_dir(self) -> Path:
        """One read-only DuckDB file per role, holding what the access policy lets it read."""
        return self.data_dir / "access"

    @property
    def alerting(self) -> AlertSettings:
        return self.alerts or AlertSettings(log_path=self.data_dir / "alerts" / "alerts.jsonl")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """The settings the environment gives (unset or empty variables take the default)."""

        def get(name: str) -> str | None:
            return env.get(name) or None

        def path(name: str, default: Path) -> Path:
            value = Path(get(name) or default)
            return value if value.is_absolute() else PROJECT_ROOT / value

        data_dir = path("SPINE_DATA_DIR", PROJECT_ROOT / "data")
        as_of = get("SPINE_AS_OF")
        return cls(
            data_dir=data_dir,
            warehouse=path("SPINE_WAREHOUSE", data_dir / "warehouse.duckdb"),
            landing_dir=path("SPINE_LANDING_DIR", data_dir / "landing" / "usage_events"),
            dagster_home=path("DAGSTER_HOME", PROJECT_ROOT / ".dagster_home"),
            preset=get("SPINE_PRESET") or "small",
            seed=int(get("SPINE_SEED") or 42),
            as_of=date.fromisoformat(as_of) if as_of else None,
            defects=get("SPINE_DEFECTS") or "default",
            variant=get("SPINE_VARIANT") or "default",
            vendor_api_port=int(get("SPINE_VENDOR_API_PORT") or 8765),
            lock_retries=int(get("SPINE_LOCK_RETRIES") or 6),
            lock_retry_seconds=float(get("SPINE_LOCK_RETRY_SECONDS") or 5),
            privacy_key=get("SPINE_PRIVACY_KEY"),
            warehouse_target=(get("SPINE_WAREHOUSE_TARGET") or "duckdb").lower(),
            postgres_url=get("SPINE_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
            executor=(get("SPINE_EXECUTOR") or "in_process").lower().replace("-", "_"),
            celery_broker_url=get("SPINE_CELERY_BROKER_URL") or DEFAULT_CELERY_BROKER_URL,
            celery_backend_url=get("SPINE_CELERY_BACKEND_URL") or "rpc://",
            celery_queue=get("SPINE_CELERY_QUEUE") or "dagster",
            dagster_postgres_url=get("SPINE_DAGSTER_POSTGRES_URL"),
            quality=QualitySettings(
                volume_tolerance=float(get("SPINE_VOLUME_TOLERANCE") or 0.5),
                volume_window=int(get("SPINE_VOLUME_WINDOW") or 7),
                volume_min_readings=int(get("SPINE_VOLUME_MIN_READINGS") or 3),
                duckdb_memory_limit=get("SPINE_DUCKDB_MEMORY_LIMIT") or "1GB",
            ),
            alerts=AlertSettings(
                log_path=path("SPINE_ALERT_LOG", data_dir / "alerts" / "alerts.jsonl"),
                webhook_url=get("SPINE_ALERT_WEBHOOK_URL"),
                slack_webhook_url=get("SPINE_ALERT_SLACK_WEBHOOK_URL"),
                max_attempts=int(get("SPINE_ALERT_MAX_ATTEMPTS") or 4),
                timeout_seconds=float(get("SPINE_ALERT_TIMEOUT_SECONDS") or 5.0),
                max_wait_seconds=float(get("SPINE_ALERT_MAX_WAIT_SECONDS") or 10.0),
            ),
        )


@functools.cache
def settings() -> Settings:
    """This process's settings, read from the environment the first time they are asked for."""
    return Settings.from_env()
