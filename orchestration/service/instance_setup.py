"""The service's Dagster instance: `dagster.yaml` (beside this module) written into DAGSTER_HOME,
its PostgreSQL database created when missing, and its tables made or migrated.

Every process of the service opens the instance from DAGSTER_HOME, the Celery workers from the
reference each step carries (whose configuration names the same environment variable), so the
one thing each machine needs is SPINE_DAGSTER_POSTGRES_URL in its environment."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg2
from dagster._core.instance.ref import InstanceRef
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from psycopg2 import sql

SERVICE_DIR = Path(__file__).resolve().parent
INSTANCE_YAML = SERVICE_DIR / "dagster.yaml"
WORKSPACE_YAML = SERVICE_DIR / "workspace.yaml"
URL_VARIABLE = "SPINE_DAGSTER_POSTGRES_URL"
# SQLAlchemy 2.1, which Dagster's storage connects through, reads a bare `postgresql://` as
# psycopg 3; the driver installed (dagster-postgres's own dependency) is psycopg2.
URL_SCHEME = "postgresql+psycopg2"


def url_problem(url: str | None) -> str | None:
    """What is wrong with the instance's database URL, in one line, or None."""
    if not url:
        return f"{URL_VARIABLE} is not set: {URL_SCHEME}://user@host:5432/dagster (the instance's database)"
    parts = urlsplit(url)
    if parts.scheme != URL_SCHEME:
        return (
            f"{URL_VARIABLE} starts with {parts.scheme or '(no scheme)'}://: write {URL_SCHEME}://..., the driver "
            "Dagster's storage uses here (SQLAlchemy reads postgresql:// as psycopg 3, which is not installed)"
        )
    if not database_name(url):
        return f"{URL_VARIABLE} names no database: {URL_SCHEME}://user@host:5432/<database>"
    return None


def libpq_url(url: str) -> str:
    """The same database as libpq (psycopg2, psql, pg_dump) takes it."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def write_instance_yaml(home: Path) -> tuple[Path, bool]:
    """Put the service's dagster.yaml into `home`; whether the file there changed."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if target.exists() and target.read_text() == INSTANCE_YAML.read_text():
        return target, False
    shutil.copyfile(INSTANCE_YAML, target)
    return target, True


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def create_database(url: str) -> bool:
    """Create the database `url` names unless it exists (connected to the server's `postgres`
    database as the same user); whether it was created."""
    name = database_name(url)
    parts = urlsplit(libpq_url(url))
    maintenance = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    con = psycopg2.connect(maintenance)
    try:
        con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with con.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True
    finally:
        con.close()


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance of `home`; on PostgreSQL its tables are created as it opens."""
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def on_postgres(instance: dg.DagsterInstance) -> bool:
    """Whether the instance keeps its runs and events on PostgreSQL (shared by every machine)."""
    return isinstance(instance.run_storage, PostgresRunStorage) and isinstance(
        instance.event_log_storage, PostgresEventLogStorage
    )
