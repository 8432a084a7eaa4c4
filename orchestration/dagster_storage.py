"""The Dagster instance's storage: Dagster's own SQLite storage, or dagster-postgres's, the event
log keeping its database connections open.

Dagster's SQLite event log opens a new SQLAlchemy engine, and a new connection, for every event
it stores (twice for an asset or check event: the run's database, then the cross-run index),
and compiles every statement anew each time, since SQLAlchemy caches compiled statements per
engine. A `spine run` at `tiny` stores about 1,500 events (one planned and one result per dbt
test, model and audit check, one output per step result), which took about a quarter of the
pipeline process's CPU. This storage keeps one engine per database file, the index and the
few runs being written: storing 300 asset events took 1.7 s of CPU with Dagster's storage and
0.4 s with this one.
Everything else, the files and their schema included, is Dagster's: an instance written by
either storage reads the same with the other. `.dagster_home/dagster.yaml` selects it through
the instance class (`SpineInstance`), which keeps Dagster's default storage in the instance's
own folder.

dagster-postgres's event log does the same on PostgreSQL: a new connection (a new backend
process on the server) for every event, by design, so that idle instances hold none. A run of
the service stores thousands of events from the run's process and the workers' steps; the
service's instance (`orchestration/service/dagster.yaml`) keeps one open per process instead,
more while threads need them (storing 300 events: 6.1 s with one connection each, 2.0 s
pooled, on a busy 2-core machine).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine
from sqlalchemy.engine import Connection, Engine

# Engines kept open: the index and the runs written or read lately. A run's database is
# written by one process at a time, and the Dagster UI reads many runs' logs: beyond this many,
# the least recently used engine is closed rather than keeping every run's file open.
_OPEN_DATABASES = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with one engine per database file kept open (see the module)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
            )
            self._engines[shard] = engine
            while len(self._engines) > _OPEN_DATABASES:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As Dagster's: one connection at a time per storage (the event log watcher is a thread),
        # the database created on first use.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                try:
                    with conn.begin():
                        yield conn
                except Exception:
                    raise
                except BaseException:
                    # An interrupt (Ctrl-C, a run being stopped) can land mid-statement or
                    # mid-rollback, leaving this connection's transaction, and SQLite's write
                    # lock, in an unknown state: the connection is closed rather than reused,
                    # so the next event (the run's RUN_CANCELED) is written on a fresh one, as
                    # with Dagster's storage, which never reuses one.
                    conn.invalidate()
                    raise

    def has_table(self, table_name: str) -> bool:
        # Asked for every asset and check event stored, inside the connection that stores it
        # (so not through `_connect`, which holds the lock); a table, once there, stays.
        if table_name not in self._tables:
            with self._engine(INDEX_SHARD_NAME).connect() as conn:
                if conn.dialect.has_table(conn, table_name):
                    self._tables.add(table_name)
        return table_name in self._tables

    def _close_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._close_engines()  # the run files are deleted
        self._tables.clear()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._close_engines()


# Pooled engines of this process: a forked child (a Celery worker's step process) must not
# share the parent's open connections, so it drops them and opens its own.
_POOLED_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [engine.dispose(close=False) for engine in list(_POOLED_ENGINES)])


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log with one connection kept open per process (see the module)."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=4,  # the event watcher's and the UI's threads, beside the run's
            pool_pre_ping=True,  # a connection the server closed meanwhile is replaced, not failed
        )
        _POOLED_ENGINES.add(self._engine)

    @classmethod
    def of(cls, storage: PostgresEventLogStorage) -> PooledPostgresEventLogStorage:
        return cls(storage.postgres_url, storage.should_autocreate_tables, storage.inst_data, storage._token_provider)


class SpineInstance(DagsterInstance):
    """Dagster's instance with its default storage (SQLite files in the instance's folder), the
    event log read and written through `PooledSqliteEventLogStorage`, or dagster-postgres's
    storage with its event log through `PooledPostgresEventLogStorage`. Selected by
    `instance_class` in dagster.yaml, so every process that opens the instance (a run, the UI,
    the daemon, a worker's step, a test reading a run's folder) uses it."""

    def __init__(self, *args: Any, event_storage: EventLogStorage, **kwargs: Any):
        if type(event_storage) is SqliteEventLogStorage:
            event_storage = PooledSqliteEventLogStorage(event_storage._base_dir, event_storage.inst_data)
        elif type(event_storage) is PostgresEventLogStorage:
            event_storage = PooledPostgresEventLogStorage.of(event_storage)
        super().__init__(*args, event_storage=event_storage, **kwargs)

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return InstanceRef.config_defaults(base_dir)
