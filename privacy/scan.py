"""The personal-data scan: where, in every store the project writes, a person (or any email)
still appears.

It does not trust the classification it verifies: every column of every table of every schema
is read as text, and every file of the folders the pipeline writes is read as bytes (gzip
files decompressed, SQLite files too since Dagster keeps its runs and event logs there), so a
copy nobody declared is found as well. An email or a full name is found wherever it occurs, case
aside; an id only as a whole token (`20000001` in `hubspot:20000001`, not in `120000001`).

`scan` answers for one person (erasure's verification); `emails_in_files` finds any email at
all in the files that must never hold one (reports, alerts, logs, run storage, dlt state),
for the test suite's guard.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from data_spine.settings import Settings
from privacy.warehouse_tables import base_tables, columns_of, personal_in, quoted

# What an email looks like in any text; a scan for "any email" must not miss one, and the
# few false friends (`name@2x.png`) are rare enough to read by hand.
EMAIL = re.compile(rb"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TOKEN_EDGE = "0-9A-Za-z_"
_NOT_TEXT = ("DATE", "TIME", "TIMESTAMP", "DOUBLE", "FLOAT", "REAL", "DECIMAL", "BOOLEAN", "INTERVAL")


@dataclass(frozen=True)
class Finding:
    """Where something was found, and how often. `needle` is the position of what was found in
    the list searched for, not the value, so a finding can be logged."""

    store: str  # warehouse | files
    place: str  # schema.table.column, or a file path relative to its folder
    needle: int
    count: int

    def describe(self) -> str:
        return f"{self.store}: {self.place} ({self.count}x, identifier #{self.needle + 1})"


def _patterns(words: Iterable[str], ids: Iterable[str]) -> list[str]:
    """One RE2/Python regular expression per needle (case-insensitive)."""
    found = [re.escape(w.lower()) for w in words]
    found += [f"(^|[^{_TOKEN_EDGE}]){re.escape(str(i).lower())}($|[^{_TOKEN_EDGE}])" for i in ids]
    return found


def scan_warehouse(con: duckdb.DuckDBPyConnection, words: list[str], ids: list[str]) -> list[Finding]:
    patterns = _patterns(words, ids)
    if not patterns:
        return []
    findings: list[Finding] = []
    for schema, table in base_tables(con):
        # Dates, instants, decimals and booleans cannot hold an email, a name or an id.
        columns = [c for c, (t, _) in columns_of(con, schema, table).items() if not t.upper().startswith(_NOT_TEXT)]
        if not columns:
            continue
        # One pass over the table: a count per column and needle.
        counts = [
            f"count(*) FILTER (WHERE regexp_matches(lower(CAST({quoted(c)} AS VARCHAR)), ?))"
            for c in columns
            for _ in patterns
        ]
        params = [p for _ in columns for p in patterns]
        row = con.execute(f"SELECT {', '.join(counts)} FROM {quoted(schema)}.{quoted(table)}", params).fetchone()
        for i, count in enumerate(row or ()):
            if count:
                column, needle = columns[i // len(patterns)], i % len(patterns)
                findings.append(Finding("warehouse", f"{schema}.{table}.{column}", needle, int(count)))
    return findings


def file_contents(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError):
            pass  # not gzip after all (a rejected file): read as it is
    return path.read_bytes()


def files_under(folders: Iterable[Path], skip: Iterable[Path] = ()) -> Iterator[tuple[Path, Path]]:
    """(folder, file) for every file below the folders (a file given as a folder is itself),
    the skipped paths aside."""
    skipped = [s.resolve() for s in skip]
    for folder in folders:
        if folder.is_file():
            yield folder.parent, folder
            continue
        if not folder.exists():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            resolved = path.resolve()
            if any(resolved == s or s in resolved.parents for s in skipped):
                continue
            yield folder, path


def scan_files(folders: Iterable[Path], words: list[str], ids: list[str], skip: Iterable[Path] = ()) -> list[Finding]:
    patterns = [re.compile(p.encode()) for p in _patterns(words, ids)]
    if not patterns:
        return []
    findings: list[Finding] = []
    for folder, path in files_under(folders, skip):
        content = file_contents(path).lower()
        for n, pattern in enumerate(patterns):
            count = len(pattern.findall(content))
            if count:
                findings.append(Finding("files", f"{folder.name}/{path.relative_to(folder)}", n, count))
    return findings


def written_folders(cfg: Settings) -> list[Path]:
    """Every folder the pipeline writes besides the warehouse: the landing folder (and its
    rejected files), reports, alerts, dlt's working folders, Dagster's run storage and logs,
    the per-role access files, the privacy folder (its pending requests aside, which hold the
    identifiers of requests not yet done: `skipped_while_pending`)."""
    return [
        cfg.landing_dir,
        cfg.landing_dir.parent / "rejected",
        cfg.reports_dir,
        cfg.alerting.log_path.parent,
        cfg.dlt_dir,
        cfg.dagster_home,
        cfg.access_dir,
        cfg.privacy_dir,
    ]


def scan(cfg: Settings, words: list[str], ids: list[str], skip: Iterable[Path] = ()) -> list[Finding]:
    """Every place the warehouse and the written folders still hold one of the needles: the
    warehouse's tables, and its file's bytes too (space DuckDB freed keeps what was there)."""
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        findings = scan_warehouse(con, words, ids)
    patterns = [re.compile(p.encode()) for p in _patterns(words, ids)]
    content = cfg.warehouse.read_bytes().lower()
    for n, pattern in enumerate(patterns):
        count = len(pattern.findall(content))
        if count:
            findings.append(Finding("warehouse file", cfg.warehouse.name, n, count))
    return findings + scan_files(written_folders(cfg), words, ids, skip)


def emails_in_files(
    folders: Iterable[Path], known: Iterable[str] | None = None, skip: Iterable[Path] = ()
) -> dict[str, int]:
    """Every file below the folders that holds something shaped like an email, with how many;
    given the emails the data holds (`known`), only those count: a font's or a library's
    bundled text can look like an address, a customer's address is what must not leak.
    Addresses at domains reserved for documentation (RFC 2606) are never people."""
    wanted = {e.lower().encode() for e in known} if known is not None else None
    found: dict[str, int] = {}
    for folder, path in files_under(folders, skip):
        hits = [m for m in EMAIL.findall(file_contents(path)) if not _reserved(m)]
        if wanted is not None:
            hits = [m for m in hits if m.lower() in wanted]
        if hits:
            found[f"{folder.name}/{path.relative_to(folder)}"] = len(hits)
    return found


def emails_in_warehouse(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every email the warehouse's classified email columns hold, lower-cased: what the guard
    looks for elsewhere."""
    found: set[str] = set()
    for schema, table in base_tables(con):
        if not schema.startswith("raw_") or schema.endswith("_staging"):
            continue
        for column in personal_in(con, schema, table):
            if column.personal_data == "email":
                rows = con.execute(
                    f"SELECT DISTINCT lower(trim(CAST({quoted(column.name)} AS VARCHAR))) "
                    f"FROM {quoted(schema)}.{quoted(table)} WHERE {quoted(column.name)} LIKE '%@%'"
                ).fetchall()
                found.update(value for (value,) in rows)
    return found


def _reserved(email: bytes) -> bool:
    domain = email.rsplit(b"@", 1)[-1].lower()
    return domain in (b"example.com", b"example.org", b"example.net") or domain.endswith(
        (b".example", b".test", b".invalid", b".localhost")
    )
