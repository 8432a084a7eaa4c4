"""Write-audit-publish: consumers read the `serving` schema, which only advances when an
entity's audit passes.

dbt writes the marts (schema `marts`), the entity's suite audits them, and only then are the
entity's marts copied into `serving`, all of them in one transaction together with a row in
`quality.publications`. Only what changed is written: a table whose audited fingerprint is the
one `serving` already holds is left alone, and a table whose rows carry `refreshed_at` (the
incremental event-grain marts) gets only the rows dbt wrote since the version `serving` holds,
replaced by key; it is copied whole when that would not give the same rows.

Nothing is copied, and the decision is recorded as `held`, when a blocking check of the audit
failed, or when the marts are no longer what was audited (another run rebuilt them in between:
their fingerprints differ): `serving` keeps the last version that passed. A reader of
`serving` never sees a half-published entity or an unaudited table. The fingerprints compared
and the rows copied are read in one transaction, so on PostgreSQL, where dbt may rebuild a
mart while another process publishes, both see the same version of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data_spine.warehouse import Warehouse
from expectations.dialects import (
    MISSING_TABLE,
    begin_snapshot,
    one_at_a_time,
    replace_table,
    rows_inserted,
    schema_changes,
    timestamp_type,
    warehouse_of,
)
from expectations.runner import AUDITS_TABLE, REFRESHED_AT, RESULTS_TABLE, fingerprints, table_fingerprint
from expectations.suite import Suite

SERVING_SCHEMA = "serving"
PUBLICATIONS_TABLE = "quality.publications"
PUBLICATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {PUBLICATIONS_TABLE} (
    entity            VARCHAR   NOT NULL,
    run_id            VARCHAR   NOT NULL,  -- the run that decided
    decided_at        TIMESTAMP NOT NULL,  -- UTC
    status            VARCHAR   NOT NULL,  -- published | held
    row_counts        VARCHAR   NOT NULL,  -- JSON {{table: rows}} of the candidate marts
    blocking_failures VARCHAR   NOT NULL,  -- JSON list of failed blocking check names
    serving_run_id    VARCHAR,             -- the run whose version serving holds afterwards
    audit_run_id      VARCHAR,             -- the run whose audit was decided on
    reason            VARCHAR,             -- why it was held
    fingerprints      VARCHAR,             -- JSON {{table: fingerprint}} of what was decided on
    written           VARCHAR              -- JSON {{table: how it reached serving}}
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
    reason: str | None = None
    # How each table reached serving: "unchanged", "N rows replaced" (by key) or "copied".
    written: dict[str, str] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.status == "published"

    def describe(self) -> str:
        tables = ", ".join(f"{SERVING_SCHEMA}.{t} ({n:,} rows)" for t, n in self.row_counts.items())
        if self.published:
            kept = [t for t, how in self.written.items() if how == "unchanged"]
            unchanged = f" ({', '.join(kept)} unchanged)" if kept else ""
            return f"{self.entity}: audit passed; published {tables} from run {self.run_id}{unchanged}."
        kept = (
            f"serving keeps the version published by run {self.serving_run_id} at "
            f"{self.serving_published_at:%Y-%m-%d %H:%M} UTC"
            if self.serving_run_id
            else "serving holds no version of it yet"
        )
        verdict = "audit FAILED, not published" if self.blocking_failures else "not published"
        return f"{self.entity}: {verdict}: {self.reason}; {kept}."


class NotAudited(LookupError):
    """No audit of the entity in the run (or the runs it re-executes) to decide on."""


def publish(warehouse: Warehouse | Path, suite: Suite, run_id: str, audit_runs: tuple[str, ...] = ()) -> Decision:
    """Publish the entity's marts if its latest audit in `run_id` (or in `audit_runs`, the runs a
    re-execution continues) passed every blocking check and still matches the marts; otherwise
    hold them back. Either way the decision is recorded and returned."""
    with warehouse_of(warehouse).connect() as con:
        _prepare(con)
        audit_run, audited = _latest_audit(con, suite.entity, (run_id, *audit_runs))
        failures = _blocking_failures(con, suite.entity, audit_run)
        now = datetime.now(UTC).replace(tzinfo=None)
        written: dict[str, str] = {}
        with one_at_a_time(con, f"publishing {suite.entity}"):
            begin_snapshot(con)
            try:
                current = fingerprints(con, suite)
                changed = sorted(t for t in suite.publishes if audited.get(t) != current[t])
                reason = None
                if failures:
                    reason = f"{len(failures)} blocking check(s) failed ({', '.join(failures)})"
                elif changed:
                    reason = (
                        f"{', '.join(changed)} changed after the audit of run {audit_run} (rebuilt by another "
                        "run?); audit them again"
                    )
                counts = {t: int(p.split(":")[0]) if p else 0 for t, p in current.items()}
                if reason is None:
                    served = _served_fingerprints(con, suite.entity)
                    for table in suite.publishes:
                        written[table] = _write_serving(
                            con, table, suite.key_of(table), current[table], served.get(table)
                        )
                previous = current_version(con, suite.entity)
                serving_run_id = run_id if reason is None else (previous[0] if previous else None)
                con.execute(
                    f"INSERT INTO {PUBLICATIONS_TABLE} (entity, run_id, decided_at, status, row_counts, "
                    "blocking_failures, serving_run_id, audit_run_id, reason, fingerprints, written) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        suite.entity,
                        run_id,
                        now,
                        "held" if reason else "published",
                        json.dumps(counts),
                        json.dumps(failures),
                        serving_run_id,
                        audit_run,
                        reason,
                        json.dumps(current),
                        json.dumps(written),
                    ],
                )
                con.commit()
            except BaseException:
                con.rollback()
                raise
    return Decision(
        suite.entity,
        run_id,
        "held" if reason else "published",
        counts,
        failures,
        serving_run_id,
        now if reason is None else (previous[1] if previous else None),
        reason,
        written,
    )


def _columns(con: Any, schema: str, table: str) -> list[tuple]:
    # PostgreSQL's data_type leaves out a numeric's precision and scale, a varchar's length.
    return con.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale, character_maximum_length "
        "FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()


def _write_serving(con: Any, table: str, key: tuple[str, ...], fingerprint: str | None, served: str | None) -> str:
    """Make `serving.<table>` hold what `marts.<table>` holds, writing as little as it can;
    says how. Runs inside the publishing transaction."""
    target, source = f"{SERVING_SCHEMA}.{table}", f"marts.{table}"
    columns = _columns(con, "marts", table)
    same_shape = columns == _columns(con, SERVING_SCHEMA, table)
    if same_shape and fingerprint is not None and fingerprint == served:
        return "unchanged"  # serving already holds exactly these rows
    if same_shape and key and any(c[:2] == (REFRESHED_AT, timestamp_type(con)) for c in columns):
        (since,) = con.execute(f"SELECT max({REFRESHED_AT}) FROM {target}").fetchone()
        if since is not None:
            match = " AND ".join(f"{target}.{k} = fresh.{k}" for k in key)
            fresh = f"SELECT * FROM {source} WHERE {REFRESHED_AT} > ?"
            con.execute(f"DELETE FROM {target} USING ({fresh}) AS fresh WHERE {match}", [since])
            n = rows_inserted(con, f"INSERT INTO {target} {fresh}", [since])
            # Rows that left the marts (a full refresh without them, say) are not in the delta:
            # only a serving table with the audited fingerprint counts as published.
            if table_fingerprint(con, target, key) == fingerprint:
                return f"{n} rows replaced"
    replace_table(con, target, source, same_shape)
    return "copied"


def _served_fingerprints(con: Any, entity: str) -> dict[str, str | None]:
    """The fingerprints of the version `serving` holds for the entity (none before they were kept)."""
    row = con.execute(
        f"SELECT fingerprints FROM {PUBLICATIONS_TABLE} WHERE entity = ? AND status = 'published' "
        "ORDER BY decided_at DESC LIMIT 1",
        [entity],
    ).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def hold_unbuilt(con: Any, suite: Suite, run_id: str, reason: str) -> Decision:
    """Record that the entity is held back without an audit: a model it is built from failed
    (or was skipped after a failure) in this run, so its marts are not this run's. Serving is
    untouched; the decision says why, for the scorecard and the run's output."""
    _prepare(con)
    previous = current_version(con, suite.entity)
    now = datetime.now(UTC).replace(tzinfo=None)
    con.execute(
        f"INSERT INTO {PUBLICATIONS_TABLE} (entity, run_id, decided_at, status, row_counts, blocking_failures, "
        "serving_run_id, audit_run_id, reason) VALUES (?, ?, ?, 'held', '{}', '[]', ?, NULL, ?)",
        [suite.entity, run_id, now, previous[0] if previous else None, reason],
    )
    return Decision(
        suite.entity,
        run_id,
        "held",
        {},
        [],
        previous[0] if previous else None,
        previous[1] if previous else None,
        reason,
    )


def _prepare(con: Any) -> None:
    with schema_changes(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {SERVING_SCHEMA}")
        con.execute(PUBLICATIONS_DDL)
        for column in ("audit_run_id", "reason", "fingerprints", "written"):  # a warehouse made by an older release
            con.execute(f"ALTER TABLE {PUBLICATIONS_TABLE} ADD COLUMN IF NOT EXISTS {column} VARCHAR")


def current_version(con: Any, entity: str) -> tuple[str, datetime] | None:
    """(run id, published at) of the version `serving` holds for the entity, if any."""
    try:
        return con.execute(
            f"SELECT run_id, decided_at FROM {PUBLICATIONS_TABLE} WHERE entity = ? AND status = 'published' "
            "ORDER BY decided_at DESC LIMIT 1",
            [entity],
        ).fetchone()
    except MISSING_TABLE:
        return None


def _latest_audit(con: Any, entity: str, runs: tuple[str, ...]) -> tuple[str, dict]:
    try:
        found = con.execute(
            f"SELECT run_id, fingerprints FROM {AUDITS_TABLE} WHERE entity = ? "
            f"AND run_id IN ({', '.join('?' for _ in runs)}) ORDER BY audited_at DESC LIMIT 1",
            [entity, *runs],
        ).fetchone()
    except MISSING_TABLE:
        found = None
    if found is None:
        raise NotAudited(
            f"{entity}: run {runs[0]} has no audit of it; audit the entity in the same run before "
            f"publishing it (materialize audit/{entity} with serving/{entity}'s tables)"
        )
    return found[0], json.loads(found[1])


def _blocking_failures(con: Any, entity: str, run_id: str) -> list[str]:
    rows = con.execute(
        f"SELECT check_name FROM {RESULTS_TABLE} WHERE entity = ? AND run_id = ? AND severity = 'blocking' "
        "AND NOT success ORDER BY check_name",
        [entity, run_id],
    ).fetchall()
    return [name for (name,) in rows]
