"""Erasing a person from every store the project owns, keeping every aggregate.

A row about the person (see `subjects.row_filter`) is anonymised, not deleted: its personal
text (emails, names, phones, addresses, free text) becomes null, and its person ids become
their pseudonym (`keys.pseudonym`, the same in every table, so joins and distinct counts hold).
Every other column is left alone, so MRR, ticket counts, active users and every other figure
stay what they were. Free text anywhere else that mentions the person's email or full name has
those words replaced. The same anonymisation is what the suppression list applies to a person
who comes back in a later load (`suppression.py`), so both give the same rows.

Stores, and what happens to each:
- warehouse: every table of every schema, by its columns' classification (`raw_*`, `staging`,
  `intermediate`, `marts`, `serving`); dlt's `raw_*_staging` schemas are scratch copies of the
  last load and are emptied; views hold nothing of their own;
- landing folder: the usage-event files that mention the person are rewritten in place (same
  name, so they are not read again), ids replaced by the same pseudonyms;
- caches: dlt's load packages (completed ones keep a copy of what they loaded) are removed;
  exports made for earlier access requests of the same person are removed by the request job.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from privacy.keys import pseudonym, sql_keyed_hash
from privacy.subjects import Subject, row_filter
from privacy.warehouse_tables import base_tables, columns_of, personal_in, quoted

TEXT_KINDS = ("email", "name", "phone", "address", "free_text")
ERASED = "[erased]"
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


@dataclass(frozen=True)
class Touched:
    """What one step changed in one place; no personal data, so it can go to the audit."""

    store: str  # warehouse | landing | cache
    place: str  # schema.table, a file name, a folder
    rows: int
    action: str  # anonymised | redacted | emptied | rewritten | removed

    def to_json(self) -> dict:
        return {"store": self.store, "place": self.place, "rows": self.rows, "action": self.action}


def _pseudonymised(column: str, data_type: str) -> str:
    """SQL for a column's pseudonym, its type kept: text ids become `p_<hash>`, integer ids a
    negative number (no vendor issues negative ids), both from the same keyed hash."""
    digest = sql_keyed_hash(quoted(column))
    if data_type.upper() in INTEGER_TYPES:
        return (
            f"CASE WHEN {quoted(column)} IS NULL THEN NULL ELSE -CAST(('0x' || substr({digest}, 1, 15)) AS BIGINT) END"
        )
    return f"CASE WHEN {quoted(column)} IS NULL THEN NULL ELSE 'p_' || substr({digest}, 1, 16) END"


def anonymise_rows(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, condition: str, params: list, key: bytes
) -> int:
    """Anonymise the rows of one table that `condition` selects; how many it changed."""
    declared = personal_in(con, schema, table)
    types = columns_of(con, schema, table)
    sets: list[str] = []
    set_params: list = []
    for column in declared:
        if column.name not in types:
            continue
        data_type, nullable = types[column.name]
        if column.personal_data in TEXT_KINDS:
            # A contract that forbids nulls gets a marker instead.
            sets.append(f"{quoted(column.name)} = {'NULL' if nullable else repr(ERASED)}")
        elif column.personal_data == "identifier":
            sets.append(f"{quoted(column.name)} = {_pseudonymised(column.name, data_type)}")
            set_params.append(key.decode())
    if not sets:
        return 0
    changed = con.execute(
        f"UPDATE {quoted(schema)}.{quoted(table)} SET {', '.join(sets)} WHERE {condition}", set_params + params
    ).fetchone()
    return int(changed[0]) if changed else 0


def _mention_pattern(subject: Subject) -> str | None:
    words = sorted({*subject.emails, *subject.names}, key=len, reverse=True)
    return "(?i)(" + "|".join(re.escape(w) for w in words) + ")" if words else None


def redact_mentions(con: duckdb.DuckDBPyConnection, schema: str, table: str, subject: Subject) -> int:
    """Replace the person's emails and full names inside the table's free text."""
    pattern = _mention_pattern(subject)
    if pattern is None:
        return 0
    types = columns_of(con, schema, table)
    changed = 0
    for column in personal_in(con, schema, table):
        if column.personal_data != "free_text" or column.name not in types:
            continue
        text = f"CAST({quoted(column.name)} AS VARCHAR)"
        data_type = types[column.name][0]
        replaced = f"regexp_replace({text}, ?, ?, 'g')"
        value = replaced if data_type.upper() == "VARCHAR" else f"CAST({replaced} AS {data_type})"
        result = con.execute(
            f"UPDATE {quoted(schema)}.{quoted(table)} SET {quoted(column.name)} = {value} "
            f"WHERE regexp_matches({text}, ?)",
            [pattern, ERASED, pattern],
        ).fetchone()
        changed += int(result[0]) if result else 0
    return changed


def erase_warehouse(con: duckdb.DuckDBPyConnection, subject: Subject, key: bytes) -> list[Touched]:
    """Anonymise the person in every table of the warehouse, in one transaction: a reader sees
    the person whole or gone, never half."""
    touched: list[Touched] = []
    con.execute("BEGIN TRANSACTION")
    try:
        for schema, table in base_tables(con):
            place = f"{schema}.{table}"
            if schema.startswith("raw_") and schema.endswith("_staging"):
                emptied = con.execute(f"DELETE FROM {quoted(schema)}.{quoted(table)}").fetchone()
                if emptied and emptied[0]:
                    touched.append(Touched("warehouse", place, int(emptied[0]), "emptied"))
                continue
            condition, params = row_filter(personal_in(con, schema, table), subject.emails, subject.ids)
            if condition != "false":
                rows = anonymise_rows(con, schema, table, condition, params, key)
                if rows:
                    touched.append(Touched("warehouse", place, rows, "anonymised"))
            rows = redact_mentions(con, schema, table, subject)
            if rows:
                touched.append(Touched("warehouse", place, rows, "redacted"))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    # Written to the database file now, not at some later checkpoint: the old values leave the
    # write-ahead log.
    con.execute("CHECKPOINT")
    return touched


def compact(warehouse: Path) -> Touched:
    """Rewrite the warehouse into a new file and put it in the old one's place. DuckDB reuses
    the blocks an update frees but never blanks them: until overwritten, the old values stay
    readable in the file (`strings warehouse.duckdb` finds them). A copy holds only what the
    tables hold now. Tables, views, constraints and schemas come along; the copy takes about
    a second at the small company and one read of the warehouse at any size."""
    warehouse = Path(warehouse)
    fresh = warehouse.with_name(f".{warehouse.stem}.compacting{warehouse.suffix}")
    fresh.unlink(missing_ok=True)
    before = warehouse.stat().st_size
    con = duckdb.connect()
    try:
        # Attached under its own name, so views that name their catalog bind while copied.
        con.execute(f"ATTACH '{warehouse}' AS {quoted(warehouse.stem)} (READ_ONLY)")
        con.execute(f"ATTACH '{fresh}' AS compacted")
        con.execute(f"COPY FROM DATABASE {quoted(warehouse.stem)} TO compacted")
    finally:
        con.close()
    os.replace(fresh, warehouse)
    return Touched("warehouse", warehouse.name, 0, f"compacted ({before:,} -> {warehouse.stat().st_size:,} bytes)")


def erase_landing_files(landing_dir: Path, subject: Subject, key: bytes) -> list[Touched]:
    """Rewrite, under the same name, every usage-event file that mentions the person: each id
    becomes its pseudonym (as in the warehouse), each email or full name `[erased]`."""
    ids = {value: pseudonym(key, value) for value in subject.all_ids()}
    words = sorted({*subject.emails, *subject.names}, key=len, reverse=True)
    if not ids and not words:
        return []
    # Ids only as whole JSON strings or numbers, never inside another value.
    id_pattern = (
        re.compile(
            rb'(?<=")(' + b"|".join(re.escape(i.encode()) for i in sorted(ids, key=len, reverse=True)) + rb')(?=")'
        )
        if ids
        else None
    )
    word_pattern = re.compile(rb"(?i)(" + b"|".join(re.escape(w.encode()) for w in words) + rb")") if words else None
    touched: list[Touched] = []
    folders = [landing_dir, landing_dir.parent / "rejected"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as f:
                content = f.read()
            lowered = content.lower()
            if not any(i.encode().lower() in lowered for i in ids) and not any(w.encode() in lowered for w in words):
                continue
            count = 0
            if id_pattern is not None:
                content, n = id_pattern.subn(lambda m: pseudonym(key, m.group(1).decode()).encode(), content)
                count += n
            if word_pattern is not None:
                content, n = word_pattern.subn(ERASED.encode(), content)
                count += n
            if not count:
                continue
            partial = path.with_name(f".{path.name}.erasing")
            with opener(partial, "wb") as f:
                f.write(content)
            os.replace(partial, path)
            touched.append(Touched("landing", f"{folder.name}/{path.name}", count, "rewritten"))
    return touched


def remove_load_packages(dlt_dir: Path) -> list[Touched]:
    """dlt's load packages of every pipeline: a completed one keeps a copy of what it loaded,
    a pending one is dropped by the next load anyway (the data is read again from the source)."""
    touched: list[Touched] = []
    if not dlt_dir.is_dir():
        return touched
    for pipeline in sorted(p for p in dlt_dir.iterdir() if p.is_dir()):
        for stage in ("load/loaded", "load/normalized", "load/new", "normalize/extracted"):
            folder = pipeline / stage
            if not folder.is_dir():
                continue
            for package in sorted(folder.iterdir()):
                if package.is_dir():
                    shutil.rmtree(package)
                else:
                    package.unlink()
                touched.append(Touched("cache", f"{pipeline.name}/{stage}/{package.name}", 0, "removed"))
    return touched
