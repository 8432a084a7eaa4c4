"""Write-audit-publish: consumers read the `serving` schema, which only advances when an
entity's audit passes.

dbt writes the marts (schema `marts`), the entity's suite audits them, and only then are the
entity's marts copied into `serving`, all of them in one transaction together with a row in
`quality.publications`. When a blocking check failed, nothing is copied: `serving` keeps the
last version that passed, and the decision is recorded as `held` with the failures that
caused it. A reader of `serving` never sees a half-published entity or an unaudited table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from expectations.runner import RESULTS_TABLE
from expectations.suite import Suite

SERVING_SCHEMA = "serving"
PUBLICATIONS_TABLE = "quality.publications"
PUBLICATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {PUBLICATIONS_TABLE} (
    entity            VARCHAR   NOT NULL,
    run_id            VARCHAR   NOT NULL,  -- the run whose audit decided
    decided_at        TIMESTAMP NOT NULL,  -- UTC
    status            VARCHAR   NOT NULL,  -- published | held
    row_counts        VARCHAR   NOT NULL,  -- JSON {{table: rows}} of the candidate marts
    blocking_failures VARCHAR   NOT NULL,  -- JSON list of failed blocking check names
    serving_run_id    VARCHAR              -- the run whose version serving holds afterwards
)
"""


@dataclass(frozen=True)
class Decision:
    entity: str
    run_id: str
    status: str  # published | held
    row_counts: dict[str, int]
    blocking_failures: list[str]
    serving_run_id: str | None
    serving_published_at: datetime | None

    @property
    def published(self) -> bool:
        return self.status == "published"

    def describe(self) -> str:
        tables = ", ".join(f"{SERVING_SCHEMA}.{t} ({n:,} rows)" for t, n in self.row_counts.items())
        if self.published:
            return f"{self.entity}: audit passed; published {tables} from run {self.run_id}."
        kept = (
            f"serving keeps the version published by run {self.serving_run_id} at "
            f"{self.serving_published_at:%Y-%m-%d %H:%M} UTC"
            if self.serving_run_id else "serving holds no version of it yet"
        )
        return (
            f"{self.entity}: audit FAILED, not published: {len(self.blocking_failures)} blocking "
            f"check(s) failed ({', '.join(self.blocking_failures)}); {kept}."
        )


class NotAudited(LookupError):
    """The run has no audit of the entity to decide on."""


def publish(warehouse: Path, suite: Suite, run_id: str) -> Decision:
    """Publish the entity's marts if the audit of `run_id` passed every blocking check,
    otherwise hold them back; either way the decision is recorded and returned."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {SERVING_SCHEMA}")
        con.execute(PUBLICATIONS_DDL)
        failures = _blocking_failures(con, suite.entity, run_id)
        counts = {t: con.execute(f"SELECT count(*) FROM marts.{t}").fetchone()[0] for t in suite.publishes}
        now = datetime.now(UTC).replace(tzinfo=None)
        con.execute("BEGIN TRANSACTION")
        try:
            if not failures:
                for table in suite.publishes:
                    con.execute(
                        f"CREATE OR REPLACE TABLE {SERVING_SCHEMA}.{table} AS SELECT * FROM marts.{table}"
                    )
            previous = current_version(con, suite.entity)
            serving_run_id = run_id if not failures else (previous[0] if previous else None)
            con.execute(
                f"INSERT INTO {PUBLICATIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                [suite.entity, run_id, now, "held" if failures else "published",
                 json.dumps(counts), json.dumps(failures), serving_run_id],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return Decision(
        suite.entity, run_id, "held" if failures else "published", counts, failures,
        serving_run_id, now if not failures else (previous[1] if previous else None),
    )


def current_version(con: duckdb.DuckDBPyConnection, entity: str) -> tuple[str, datetime] | None:
    """(run id, published at) of the version `serving` holds for the entity, if any."""
    try:
        return con.execute(
            f"SELECT run_id, decided_at FROM {PUBLICATIONS_TABLE} WHERE entity = ? AND status = 'published' "
            "ORDER BY decided_at DESC LIMIT 1",
            [entity],
        ).fetchone()
    except duckdb.CatalogException:
        return None


def _blocking_failures(con: duckdb.DuckDBPyConnection, entity: str, run_id: str) -> list[str]:
    try:
        rows = con.execute(
            f"SELECT check_name, success FROM {RESULTS_TABLE} WHERE entity = ? AND run_id = ? "
            "AND severity = 'blocking' ORDER BY check_name",
            [entity, run_id],
        ).fetchall()
    except duckdb.CatalogException:
        rows = []
    if not rows:
        raise NotAudited(
            f"{entity}: run {run_id} has no audit of it; audit the entity in the same run before "
            f"publishing it (materialize audit/{entity} with serving/{entity})"
        )
    return [name for name, success in rows if not success]
