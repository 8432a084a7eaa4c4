"""Access and portability: every record about a person, in every layer, as JSON and CSV.

The export reads each layer the person passes through: the raw tables as each system sent
them (`raw_*`), staging, intermediate, the marts and what consumers are served, plus the
usage-event lines in the landing folder. Each record names the system it came from: the
vendor for raw data and landing lines, the record's own `source_system` where a modelled
table keeps one, else the layer that derived it.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import json
from pathlib import Path
from typing import Any

import duckdb

from privacy.subjects import Subject, row_filter
from privacy.warehouse_tables import personal_in, quoted

LAYERS = ("raw", "staging", "intermediate", "marts", "serving")
# Raw schema -> the system whose records it holds.
SYSTEMS = {"raw_hubspot": "hubspot", "raw_stripe": "stripe", "raw_zendesk": "zendesk", "raw_usage_events": "product"}


def layer_of(schema: str) -> str | None:
    if schema.startswith("raw_"):
        return None if schema.endswith("_staging") else "raw"
    return schema if schema in LAYERS else None


def _relations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Tables and views of the layers a person's records pass through (staging is views)."""
    return [
        (schema, name)
        for schema, name in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\' ORDER BY 1, 2"
        ).fetchall()
        if layer_of(schema)
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def records(con: duckdb.DuckDBPyConnection, subject: Subject) -> dict[str, list[dict[str, Any]]]:
    """`schema.table` -> the person's rows there, each with its `_system`."""
    found: dict[str, list[dict[str, Any]]] = {}
    for schema, table in _relations(con):
        condition, params = row_filter(personal_in(con, schema, table), subject.emails, subject.ids)
        if condition == "false":
            continue
        cursor = con.execute(f"SELECT * FROM {quoted(schema)}.{quoted(table)} WHERE {condition}", params)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, map(_plain, row), strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["_system"] = SYSTEMS.get(schema) or row.get("source_system") or f"data spine ({schema})"
        if rows:
            found[f"{schema}.{table}"] = rows
    return found


def landing_lines(landing_dir: Path, subject: Subject) -> list[dict[str, Any]]:
    """Usage-event lines in the landing folder that carry one of the person's product ids or emails."""
    needles = [f'"{i}"'.encode() for i in subject.ids_of("product_user")] + [e.encode() for e in subject.emails]
    if not needles or not landing_dir.is_dir():
        return []
    found = []
    for path in sorted(landing_dir.glob("*.gz")):
        try:
            with gzip.open(path, "rb") as f:
                for n, line in enumerate(f, start=1):
                    lowered = line.lower()
                    if any(needle.lower() in lowered for needle in needles):
                        found.append(
                            {
                                "_system": "product (landing folder)",
                                "file": path.name,
                                "line": n,
                                "event": json.loads(line),
                            }
                        )
        except (OSError, EOFError, json.JSONDecodeError):
            continue  # a file the pipeline rejected is read as it is by the scan, not exported
    return found


def write(
    out_dir: Path, request_id: str, found: dict[str, list[dict[str, Any]]], landing: list[dict[str, Any]]
) -> dict[str, Any]:
    """`subject_access.json` (everything, by layer and table) and one CSV per table; returns a
    summary without personal data (tables and row counts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_layer: dict[str, dict[str, list]] = {}
    for place, rows in found.items():
        by_layer.setdefault(layer_of(place.split(".")[0]) or "other", {})[place] = rows
    document = {
        "request_id": request_id,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "layers": by_layer,
        "landing_folder": landing,
    }
    (out_dir / "subject_access.json").write_text(json.dumps(document, indent=1, default=str))
    for place, rows in found.items():
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with open(out_dir / f"{place}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()} for row in rows
            )
    if landing:
        with open(out_dir / "landing_folder.usage_events.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["_system", "file", "line", "event"])
            writer.writerows([r["_system"], r["file"], r["line"], json.dumps(r["event"])] for r in landing)
    return {
        "layers": {layer: {place: len(rows) for place, rows in tables.items()} for layer, tables in by_layer.items()},
        "landing_lines": len(landing),
        "folder": str(out_dir),
    }
