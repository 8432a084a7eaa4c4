"""The suppression list: erased people stay erased when a source sends them again.

An erasure records the keyed hash of each of the person's identifiers (emails and person ids,
never the values) in `privacy.suppressions`. After every load, `apply` looks, among the rows
that load wrote, for a row whose email or person id hashes to a suppressed one, and anonymises
it exactly as the erasure did (`erasure.anonymise_rows`): a source restored from a backup, a
vendor that has not processed its deletion yet, or a landing file sent again brings the person
back for the moment between the load's commit and this step, and no further. A re-sent record
whose key is itself a person id (a HubSpot contact, a Zendesk user) anonymises to the key the
erased record already has; the older of the two rows is then removed, as a merge would have.

Cost follows change: only the load's own rows are hashed, inside DuckDB, and nothing at all
runs while the list is empty.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb

from privacy.erasure import anonymise_rows
from privacy.keys import sql_keyed_hash
from privacy.subjects import Subject
from privacy.warehouse_tables import base_tables, personal_in, quoted

SCHEMA = "privacy"
TABLE = f"{SCHEMA}.suppressions"


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (hash VARCHAR NOT NULL, kind VARCHAR NOT NULL, "
        "request_id VARCHAR NOT NULL, added_at TIMESTAMP NOT NULL, PRIMARY KEY (hash, kind))"
    )


def record(con: duckdb.DuckDBPyConnection, subject: Subject, key: bytes, request_id: str) -> int:
    """Add the person's identifiers' hashes; how many were new."""
    ensure(con)
    rows = [
        (h, kind, request_id, datetime.now(UTC).replace(tzinfo=None))
        for kind, hashes in subject.hashes(key).items()
        for h in hashes
    ]
    before = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    con.executemany(f"INSERT OR IGNORE INTO {TABLE} VALUES (?, ?, ?, ?)", rows)
    return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] - before


def _suppressed_kinds(con: duckdb.DuckDBPyConnection) -> set[str]:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'suppressions'",
        [SCHEMA],
    ).fetchone()[0]
    if not exists:
        return set()
    return {kind for (kind,) in con.execute(f"SELECT DISTINCT kind FROM {TABLE}").fetchall()}


def primary_keys(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, list[str]]:
    """Each table's primary key as dlt declared it (its latest stored schema)."""
    try:
        row = con.execute(
            f"SELECT schema FROM {quoted(schema)}._dlt_version ORDER BY inserted_at DESC LIMIT 1"
        ).fetchone()
    except duckdb.CatalogException:
        return {}
    if not row:
        return {}
    tables = json.loads(row[0]).get("tables", {})
    return {
        name: [c for c, hints in table.get("columns", {}).items() if hints.get("primary_key")]
        for name, table in tables.items()
    }


def apply(con: duckdb.DuckDBPyConnection, schema: str, key: bytes, load_ids: list[str] | None = None) -> dict[str, int]:
    """Anonymise, in one raw schema, the rows of suppressed people that the given loads wrote
    (every row when `load_ids` is None); rows changed per table."""
    kinds = _suppressed_kinds(con)
    if not kinds:
        return {}
    keys = primary_keys(con, schema)
    changed: dict[str, int] = {}
    for table_schema, table in base_tables(con):
        if table_schema != schema:
            continue
        columns = personal_in(con, schema, table)
        clauses: list[str] = []
        params: list = []
        for column in columns:
            kind = (
                "email"
                if column.personal_data == "email"
                else column.identifies
                if column.personal_data == "identifier"
                else None
            )
            if kind in kinds:
                clauses.append(f"{sql_keyed_hash(quoted(column.name))} IN (SELECT hash FROM {TABLE} WHERE kind = ?)")
                params += [key.decode(), kind]
        if not clauses:
            continue
        condition = "(" + " OR ".join(clauses) + ")"
        if load_ids is not None:
            if not load_ids:
                continue
            condition += f" AND _dlt_load_id IN ({', '.join('?' * len(load_ids))})"
            params += list(load_ids)
        rows = anonymise_rows(con, schema, table, condition, params, key)
        if rows:
            changed[f"{schema}.{table}"] = rows
            keep_newest(con, schema, table, keys.get(table) or [])
    return changed


def keep_newest(con: duckdb.DuckDBPyConnection, schema: str, table: str, key: list[str]) -> None:
    """Two rows with one key after anonymisation: the record was erased before and came again.
    Keep the newer load's row, as dlt's merge would have."""
    if not key:
        return
    cols = ", ".join(quoted(c) for c in key)
    con.execute(
        f"DELETE FROM {quoted(schema)}.{quoted(table)} WHERE rowid IN ("
        f"  SELECT rowid FROM (SELECT rowid, row_number() OVER (PARTITION BY {cols} ORDER BY _dlt_load_id DESC) AS n"
        f"  FROM {quoted(schema)}.{quoted(table)}) WHERE n > 1)"
    )
