"""Source monitors: volume anomalies and schema drift in the raw schemas dlt loads.

- Volume: each raw table's row count is recorded after every load and compared with the
  average of its recent readings; a count far from it (by more than `tolerance`, a share of
  the average) is an anomaly: a table emptied or replaced by a full reload that returned
  half the records, rows loaded twice. (Merge keeps what a short incremental read did not
  touch, so a partial read alone does not move the count: freshness and the suites' checks
  see that.)
- Schema drift: dlt stores a new schema version whenever a load brings a column, a table or
  a type it had not seen (a type change shows as a `<column>__v_<type>` variant column). The
  latest load drifted when its schema differs from the load before it. Tables every raw schema
  may hold by design (the quarantine, `connectors.quarantine.EXPECTED_TABLES`) are neither
  drift nor source data: their arrival and their columns are never reported, nor counted.

- Type misfits: a value that does not fit the type its raw contract declares (text where a
  number is due) is loaded with the declared column null and the value kept, as text, in
  `<column>__v_text` (connectors/contract.py). Nothing is lost and nothing stops, but each such
  record is counted, with samples naming it, so the source can be corrected.

Readings and changes are kept in the warehouse (`quality.table_volumes`,
`quality.schema_changes`) so that the scorecard and the alerts tell the same story.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import fmean
from typing import Any

from connectors.quarantine import EXPECTED_TABLES
from expectations.dialects import MISSING_TABLE, schema_changes

VOLUMES_TABLE = "quality.table_volumes"
SCHEMA_CHANGES_TABLE = "quality.schema_changes"
_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {VOLUMES_TABLE} (
        measured_at TIMESTAMP NOT NULL,  -- UTC
        run_id      VARCHAR   NOT NULL,
        source      VARCHAR   NOT NULL,
        table_name  VARCHAR   NOT NULL,  -- <raw schema>.<table>
        row_count   BIGINT    NOT NULL,
        average     DOUBLE PRECISION,    -- of the readings before it; NULL while learning
        readings    INTEGER   NOT NULL,  -- how many readings the average is of
        anomalous   BOOLEAN   NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA_CHANGES_TABLE} (
        detected_at TIMESTAMP NOT NULL,  -- UTC
        run_id      VARCHAR   NOT NULL,
        source      VARCHAR   NOT NULL,
        load_id     VARCHAR   NOT NULL,  -- the load that brought the change
        table_name  VARCHAR   NOT NULL,
        column_name VARCHAR,             -- NULL when a whole table is new
        data_type   VARCHAR,
        change      VARCHAR   NOT NULL   -- new_table | new_column | type_variant
    )""",
)


@dataclass(frozen=True)
class VolumeReading:
    source: str
    table: str  # <raw schema>.<table>
    rows: int
    average: float | None  # None while there are fewer than `min_readings` earlier readings
    readings: int
    anomalous: bool
    measured_at: datetime | None = None  # UTC

    @property
    def deviation(self) -> float | None:
        """Relative distance from the average (-0.5: half as many rows)."""
        if self.average is None:
            return None
        return (self.rows - self.average) / self.average if self.average else float("inf") if self.rows else 0.0


@dataclass(frozen=True)
class SchemaChange:
    table: str
    column: str | None
    data_type: str | None
    change: str  # new_table | new_column | type_variant


@dataclass(frozen=True)
class Drift:
    source: str
    load_id: str | None  # the latest load, None before any
    changes: list[SchemaChange] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class VolumePolicy:
    tolerance: float = 0.5  # anomaly when |rows - average| > tolerance x average
    window: int = 7  # readings averaged
    min_readings: int = 3  # readings needed before judging


def ensure_tables(con: Any) -> None:
    with schema_changes(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS quality")
        for ddl in _DDL:
            con.execute(ddl)


def raw_tables(con: Any, dataset: str) -> list[str]:
    """The data tables of a raw schema: dlt's bookkeeping and the expected tables left out."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE' "
        "AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1",
        [dataset],
    ).fetchall()
    return [r[0] for r in rows if r[0] not in EXPECTED_TABLES]


def loaded_by(con: Any, dataset: str) -> dict[str, str]:
    """The dlt resource that loads each table of a raw schema, as the schema dlt stored with
    its latest load records it (a nested table: its root's resource)."""
    try:
        row = con.execute(f'SELECT schema FROM "{dataset}"._dlt_version ORDER BY inserted_at DESC LIMIT 1').fetchone()
    except MISSING_TABLE:  # nothing loaded yet
        return {}
    return _resources(json.loads(row[0]).get("tables", {})) if row else {}


def _resources(tables: dict[str, dict]) -> dict[str, str]:
    def root(name: str) -> str:
        while tables.get(name, {}).get("parent"):
            name = tables[name]["parent"]
        return tables.get(name, {}).get("resource") or name

    return {name: root(name) for name in tables if not name.startswith("_dlt")}


def measure_volumes(
    con: Any,
    source: str,
    dataset: str,
    run_id: str,
    policy: VolumePolicy = VolumePolicy(),
    tables: Iterable[str] | None = None,
) -> list[VolumeReading]:
    """Count every raw table of the source (or only `tables` of them), judge each count
    against its recent readings, and record the readings."""
    ensure_tables(con)
    now = datetime.now(UTC).replace(tzinfo=None)
    readings = []
    wanted = None if tables is None else set(tables)
    for table in raw_tables(con, dataset):
        if wanted is not None and table not in wanted:
            continue
        name = f"{dataset}.{table}"
        rows = con.execute(f'SELECT count(*) FROM "{dataset}"."{table}"').fetchone()[0]
        history = [
            r[0]
            for r in con.execute(
                f"SELECT row_count FROM {VOLUMES_TABLE} WHERE source = ? AND table_name = ? "
                "ORDER BY measured_at DESC LIMIT ?",
                [source, name, policy.window],
            ).fetchall()
        ]
        average = fmean(history) if len(history) >= policy.min_readings else None
        anomalous = average is not None and abs(rows - average) > policy.tolerance * average
        reading = VolumeReading(source, name, rows, average, len(history), anomalous, now)
        con.execute(
            f"INSERT INTO {VOLUMES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [now, run_id, source, name, rows, average, len(history), anomalous],
        )
        readings.append(reading)
    return readings


def detect_drift(con: Any, source: str, dataset: str, run_id: str, declared: Iterable[str] = ()) -> Drift:
    """What the schema of the source's latest load added to the schema of the load before it;
    new changes are recorded once.

    `declared` names the tables the source loads by design (its resources' tables): the first
    load of one of them (with its child tables) sets its baseline, as a source's first load
    does, so materializing a source's assets one at a time is no drift."""
    ensure_tables(con)
    try:
        loads = con.execute(
            f'SELECT load_id, schema_version_hash FROM "{dataset}"._dlt_loads WHERE status = 0 '
            "ORDER BY load_id DESC LIMIT 2"
        ).fetchall()
    except MISSING_TABLE:
        return Drift(source, None)
    if len(loads) < 2 or loads[0][1] == loads[1][1]:
        return Drift(source, loads[0][0] if loads else None)
    (latest, new_hash), (_, old_hash) = loads
    schemas = dict(
        con.execute(
            f'SELECT version_hash, schema FROM "{dataset}"._dlt_version WHERE version_hash IN (?, ?)',
            [new_hash, old_hash],
        ).fetchall()
    )
    if new_hash not in schemas or old_hash not in schemas:
        return Drift(source, latest)
    changes = _compare(json.loads(schemas[old_hash]), json.loads(schemas[new_hash]), frozenset(declared))
    recorded = con.execute(
        f"SELECT count(*) FROM {SCHEMA_CHANGES_TABLE} WHERE source = ? AND load_id = ?", [source, latest]
    ).fetchone()[0]
    if changes and not recorded:
        now = datetime.now(UTC).replace(tzinfo=None)
        con.executemany(
            f"INSERT INTO {SCHEMA_CHANGES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [[now, run_id, source, latest, f"{dataset}.{c.table}", c.column, c.data_type, c.change] for c in changes],
        )
    return Drift(source, latest, changes)


def _compare(old: dict, new: dict, declared: frozenset[str] = frozenset()) -> list[SchemaChange]:
    def data_tables(schema: dict) -> dict[str, dict]:
        return {
            name: t.get("columns", {})
            for name, t in schema.get("tables", {}).items()
            if not name.startswith("_dlt") and name not in EXPECTED_TABLES
        }

    before, after = data_tables(old), data_tables(new)
    resources = _resources(new.get("tables", {}))
    first_loads = {t for t in after if t not in before and t in declared}
    changes = []
    for table, columns in sorted(after.items()):
        if table not in before:
            if resources.get(table, table) not in first_loads:
                changes.append(SchemaChange(table, None, None, "new_table"))
            continue
        for column, spec in sorted(columns.items()):
            if column in before[table] or column.startswith("_dlt"):
                continue
            kind = "type_variant" if "__v_" in column else "new_column"
            changes.append(SchemaChange(table, column, spec.get("data_type"), kind))
    return changes


def latest_volumes(con: Any) -> list[VolumeReading]:
    """Each raw table's latest reading."""
    try:
        rows = con.execute(f"""
            SELECT source, table_name, row_count, average, readings, anomalous, measured_at
            FROM (
                SELECT *, row_number() OVER (PARTITION BY source, table_name ORDER BY measured_at DESC) AS latest
                FROM {VOLUMES_TABLE}
            ) AS readings
            WHERE latest = 1 ORDER BY source, table_name
        """).fetchall()
    except MISSING_TABLE:
        return []
    return [VolumeReading(s, t, n, avg, k, bool(a), at) for s, t, n, avg, k, a, at in rows]


def current_drifts(con: Any) -> list[Drift]:
    """The schema changes each source's latest load brought, for sources whose latest load
    changed the schema."""
    try:
        recorded = con.execute(f"""
            SELECT source, load_id, split_part(table_name, '.', 1)
            FROM (
                SELECT *, row_number() OVER (PARTITION BY source ORDER BY load_id DESC) AS latest
                FROM {SCHEMA_CHANGES_TABLE}
            ) AS changes
            WHERE latest = 1 ORDER BY source
        """).fetchall()
    except MISSING_TABLE:
        return []
    drifts = []
    for source, load_id, dataset in recorded:
        try:
            (latest,) = con.execute(f'SELECT max(load_id) FROM "{dataset}"._dlt_loads WHERE status = 0').fetchone()
        except MISSING_TABLE:
            continue
        if latest != load_id:
            continue
        changes = [
            SchemaChange(t.split(".", 1)[1], c, d, k)
            for t, c, d, k in con.execute(
                f"SELECT table_name, column_name, data_type, change FROM {SCHEMA_CHANGES_TABLE} "
                "WHERE source = ? AND load_id = ? ORDER BY 1, 2, 3, 4",
                [source, load_id],
            ).fetchall()
        ]
        drifts.append(Drift(source, load_id, changes))
    return drifts


VARIANT_SUFFIX = "__v_text"
MISFIT_SAMPLES = 5


@dataclass(frozen=True)
class Misfit:
    """Records of a raw table whose value of `column` did not fit its declared type."""

    table: str  # <raw schema>.<table>
    column: str  # the declared column, null in these records
    rows: int
    sample: list[dict]  # {key column: value, "value": the text that was sent}


def type_misfits(con: Any, dataset: str, tables: Iterable[str]) -> list[Misfit]:
    """Every declared column of `tables` that holds values of another type, with how many
    records and which (the vendor's `id` where the table has one)."""
    wanted = set(tables)
    columns: dict[str, list[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ? "
        "ORDER BY 1, ordinal_position",
        [dataset],
    ).fetchall():
        columns.setdefault(table, []).append(column)
    found = []
    for table in sorted(wanted & set(columns)):
        key = next((k for k in ("id", "_dlt_id") if k in columns[table]), None)
        for variant in (c for c in columns[table] if c.endswith(VARIANT_SUFFIX)):
            relation = f'"{dataset}"."{table}"'
            rows = con.execute(f'SELECT count(*) FROM {relation} WHERE "{variant}" IS NOT NULL').fetchone()[0]
            if not rows:
                continue
            picked = f'"{key}"::VARCHAR' if key else "NULL"
            sample = [
                {key or "record": k, "value": v[:80]}
                for k, v in con.execute(
                    f'SELECT {picked}, "{variant}"::VARCHAR FROM {relation} WHERE "{variant}" IS NOT NULL '
                    f"ORDER BY 1 LIMIT {MISFIT_SAMPLES}"
                ).fetchall()
            ]
            found.append(Misfit(f"{dataset}.{table}", variant.removesuffix(VARIANT_SUFFIX), rows, sample))
    return found
