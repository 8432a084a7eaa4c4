"""Which warehouse the pipeline writes to, and one way to open it whatever it is.

`Warehouse.of(settings)` names the target (`duckdb`, the embedded default, or `postgres`) and
knows how each layer reaches it: the dlt destination, the dbt target, a SQLAlchemy URL for
Great Expectations, and `connect()`, a DB-API connection that takes the same calls on both.

`connect()` on PostgreSQL returns `PgConnection`, a thin wrapper over a psycopg2 connection that
answers the DuckDB calls the code uses (`execute(...)` returning something to fetch from,
`fetchall`, `fetchone`, `df`), and turns DuckDB's `?` placeholders into psycopg2's. SQL the two
dialects spell differently is written per dialect where it is used (`warehouse.dialect`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import dlt
import duckdb
import pandas as pd
import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_batch

from data_spine.pg_credentials import credentials
from data_spine.settings import Settings, settings

# A `?` placeholder outside quotes; psycopg2 takes `%s` and reads a lone `%` as a placeholder.
_QUOTED_OR_MARK = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%)")


def pg_placeholders(sql: str) -> str:
    """DuckDB's `?` placeholders as psycopg2's `%s`; a `?` in quotes stays, and every `%`
    is doubled (psycopg2 reads it as a placeholder even inside quotes)."""

    def swap(match: re.Match) -> str:
        token = match.group(0)
        return "%s" if token == "?" else token.replace("%", "%%")

    return _QUOTED_OR_MARK.sub(swap, sql)


class PgCursor:
    """What `PgConnection.execute` returns: the psycopg2 cursor, with DuckDB's fetch names."""

    def __init__(self, cursor):
        self._cursor = cursor

    @property
    def description(self):
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def columns(self) -> list[str]:
        return [d[0] for d in self._cursor.description or ()]

    def df(self):
        return pd.DataFrame(self.fetchall(), columns=self.columns())


class PgConnection:
    """A psycopg2 connection that takes DuckDB's calls. Autocommit unless `begin()` is called
    (`with con.transaction():` commits or rolls back), as a DuckDB connection behaves."""

    dialect = "postgres"

    def __init__(self, raw):
        self.raw = raw
        self.raw.autocommit = True

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> PgCursor:
        cursor = self.raw.cursor()
        # Without parameters psycopg2 reads the text as it is (a `%` stays a `%`).
        cursor.execute(pg_placeholders(sql) if parameters is not None else sql, parameters)
        return PgCursor(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cursor:
            execute_batch(cursor, pg_placeholders(sql), list(rows), page_size=1000)

    def begin(self) -> None:
        self.raw.autocommit = False

    def commit(self) -> None:
        self.raw.commit()
        self.raw.autocommit = True

    def rollback(self) -> None:
        self.raw.rollback()
        self.raw.autocommit = True

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self.raw.autocommit:
            (self.rollback if kind else self.commit)()
        self.close()


def without_password(url: str) -> str:
    """A URL fit to print: its password, if it has one, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Warehouse:
    """The warehouse target and how each layer reaches it."""

    target: str  # duckdb | postgres
    duckdb_path: Path
    postgres_url: str

    @classmethod
    def of(cls, cfg: Settings | None = None) -> Warehouse:
        cfg = cfg or settings()
        return cls(cfg.warehouse_target, cfg.warehouse, cfg.postgres_url)

    @property
    def dialect(self) -> str:
        return self.target

    @property
    def is_postgres(self) -> bool:
        return self.target == "postgres"

    @property
    def dbt_target(self) -> str:
        """The output of `dbt_project/profiles.yml` that builds on this warehouse."""
        return "postgres" if self.is_postgres else "dev"

    def shown(self) -> str:
        """Where the warehouse is, as a person reads it: the DuckDB file, or the PostgreSQL URL
        without its password."""
        return without_password(self.postgres_url) if self.is_postgres else str(self.duckdb_path)

    def pg_parts(self) -> dict[str, str]:
        """host, port, user, password, dbname of the PostgreSQL URL (libpq's defaults where
        the URL leaves one out)."""
        url = urlsplit(self.postgres_url)
        return {
            "host": url.hostname or "127.0.0.1",
            "port": str(url.port or 5432),
            "user": unquote(url.username or "postgres"),
            "password": unquote(url.password or ""),
            "dbname": (url.path or "/").lstrip("/") or "postgres",
        }

    def sqlalchemy_url(self) -> str:
        if self.is_postgres:
            return "postgresql+psycopg2://" + self.postgres_url.split("://", 1)[1]
        return f"duckdb:///{self.duckdb_path}"

    def dlt_destination(self):
        if self.is_postgres:
            return dlt.destinations.postgres(credentials=credentials(self.postgres_url))
        return dlt.destinations.duckdb(str(self.duckdb_path))

    def ensure_database(self) -> None:
        """Create the PostgreSQL database when the server lacks it (the DuckDB file is created
        by its first connection)."""
        if not self.is_postgres:
            self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            return
        parts = self.pg_parts()
        server = psycopg2.connect(**{**parts, "dbname": "postgres"})
        server.autocommit = True
        try:
            with server.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (parts["dbname"],))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("create database {}").format(sql.Identifier(parts["dbname"])))
        except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
            pass  # another process starting at the same time created it first
        finally:
            server.close()

    def drop_database(self) -> None:
        """Drop the PostgreSQL database and everything in it (benchmarks and tests start from
        nothing); its sessions are ended first."""
        parts = self.pg_parts()
        server = psycopg2.connect(**{**parts, "dbname": "postgres"})
        server.autocommit = True
        try:
            with server.cursor() as cur:
                cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(parts["dbname"])))
        finally:
            server.close()

    def connect(self, read_only: bool = False, **duckdb_config):
        """A connection to the warehouse: DuckDB's own, or `PgConnection` on PostgreSQL
        (`read_only` there makes the session's transactions read-only)."""
        if not self.is_postgres:
            return duckdb.connect(str(self.duckdb_path), read_only=read_only, config=duckdb_config or {})
        raw = psycopg2.connect(self.postgres_url, application_name="data_spine")
        con = PgConnection(raw)
        # Timestamps in the marts are naive UTC; pin the zone as the DuckDB path does.
        con.execute("set time zone 'UTC'")
        if read_only:
            con.execute("set default_transaction_read_only = on")
        return con


def duckdb_only(target: Warehouse, what: str) -> str | None:
    """Why `what` cannot run on `target`, or None: the data-subject requests, retention and the
    personal-data scan rewrite and read the DuckDB file itself, and have no PostgreSQL path yet."""
    if not target.is_postgres:
        return None
    return (
        f"{what} works on the DuckDB warehouse only: it has no PostgreSQL path yet "
        "(SPINE_WAREHOUSE_TARGET=postgres); see README, 'Running as a service'"
    )
