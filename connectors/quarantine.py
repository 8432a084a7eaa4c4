"""Records that fail validation at the edge go to a quarantine table, never silently away.

Every source's raw schema has a `quarantine` table: one row per rejected record with the
source, the resource it came from, where it was found, the reason and the raw record as text.
Rows are keyed (`id`) by a hash of resource and raw record, so re-reading the same bad record
(a retried page, a re-delivered file) stores it once; `location` tells where it was last seen.

API resources route rows here with a table-name function (`table_for`), since their map steps
can only transform records; file resources yield them marked with `mark`.

The quarantine table is part of every raw schema by design, whenever its first record is set
aside: `EXPECTED_TABLES` declares it, so the source monitors never take it for schema drift
nor count it as source data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import dlt

TABLE = "quarantine"
# Tables a raw schema holds besides the source's own data, by design (see above).
EXPECTED_TABLES = frozenset({TABLE})
HINTS = dlt.mark.make_hints(
    table_name=TABLE,
    primary_key="id",
    write_disposition="merge",
    columns=[
        {"name": "id", "data_type": "text", "nullable": False},
        {"name": "source", "data_type": "text", "nullable": False},
        {"name": "resource", "data_type": "text", "nullable": False},
        {"name": "location", "data_type": "text"},
        {"name": "reason", "data_type": "text", "nullable": False},
        {"name": "raw_record", "data_type": "text"},
        {"name": "quarantined_at", "data_type": "timestamp"},
    ],
)


def _text(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True, default=str)


def row(source: str, resource: str, reason: str, raw: Any, location: str = "") -> dict[str, Any]:
    text = _text(raw)
    return {
        "id": hashlib.sha256(f"{resource}\x00{text}".encode()).hexdigest(),
        "source": source,
        "resource": resource,
        "location": location,
        "reason": reason,
        "raw_record": text,
        "quarantined_at": datetime.now(UTC),
    }


def mark(rows: Iterable[dict[str, Any]]):
    """Send rows made by `row` to the quarantine table from inside any resource."""
    return dlt.mark.with_hints(list(rows), HINTS, create_table_variant=True)


ROW_KEYS = frozenset(row("", "", "", "").keys())


def is_row(item: dict) -> bool:
    return item.keys() == ROW_KEYS


def require(source: str, resource: str, *fields: str) -> Callable[[dict], dict]:
    """A map step: a record lacking any of `fields` is replaced by its quarantine row."""

    def check(record: dict) -> dict:
        missing = [f for f in fields if record.get(f) in (None, "")]
        if not missing:
            return record
        return row(source, resource, f"missing required field(s): {', '.join(missing)}", record)

    return check


def table_for(resource: str) -> Callable[[dict], str]:
    """The table-name hint of a resource whose records may be replaced by `require`."""
    return lambda item: TABLE if is_row(item) else resource


def counts(pipeline: dlt.Pipeline, load_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Quarantined rows per resource in the pipeline's dataset (only these loads, if given)."""
    if TABLE not in pipeline.default_schema.tables:
        return {}
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return {}
        sql = f"select resource, count(*) from {client.make_qualified_table_name(TABLE)}"
        args: list[str] = []
        if load_ids is not None:
            args = list(load_ids)
            if not args:
                return {}
            sql += f" where _dlt_load_id in ({', '.join(['%s'] * len(args))})"
        rows = client.execute_sql(sql + " group by resource", *args)
    return {resource: n for resource, n in rows}
