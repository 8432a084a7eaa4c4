"""Move a DuckDB warehouse's history into PostgreSQL.

What cannot be rebuilt is copied table by table: the raw schemas dlt loaded (with dlt's own
`_dlt_loads`, `_dlt_version` and `_dlt_pipeline_state`, so the pipelines on PostgreSQL carry on
from the same cursors and read only what is new), and the history the platform keeps beside
them (`quality`: audits, publications, volume readings; `privacy`: the suppression list and the
audit of data-subject requests). Models are not copied: dbt rebuilds them on PostgreSQL from the
copied raw data (`spine warehouse migrate` does that next).

Each table streams through Arrow record batches into PostgreSQL's COPY, so memory stays
bounded by one batch whatever the table's size. A table is replaced whole in one transaction:
running the move again gives the same result.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv

from data_spine.warehouse import Warehouse

# What the platform keeps that no rebuild can give back.
HISTORY_SCHEMAS = ("quality", "privacy")
BATCH_ROWS = 100_000

_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
# DuckDB's types as PostgreSQL spells them; dlt's postgres destination lands the same ones.
_PG_TYPES = {
    "VARCHAR": "varchar",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(38, 0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20, 0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "UUID": "uuid",
    "BLOB": "bytea",
    "JSON": "jsonb",
}


@dataclass(frozen=True)
class Column:
    name: str
    duckdb_type: str

    @property
    def pg_type(self) -> str:
        if match := _DECIMAL.fullmatch(self.duckdb_type):
            return f"numeric({match[1]}, {match[2]})"
        # Lists, structs and maps travel as JSON, as dlt stores nested data on PostgreSQL.
        return _PG_TYPES.get(self.duckdb_type, "jsonb")

    @property
    def select(self) -> str:
        quoted = _quote(self.name)
        if self.pg_type == "jsonb" and self.duckdb_type != "JSON":
            return f"to_json({quoted})::VARCHAR AS {quoted}"
        if self.pg_type == "bytea":
            return f"'\\x' || hex({quoted}) AS {quoted}"
        return quoted


@dataclass(frozen=True)
class Copied:
    schema: str
    table: str
    rows: int


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def raw_and_history_schemas(con) -> list[str]:
    """The schemas to move: every `raw_*` schema (with dlt's staging ones left out: they are
    emptied after each merge) and the history schemas the warehouse has."""
    schemas = [
        name
        for (name,) in con.execute(
            "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_catalog = current_database()"
        ).fetchall()
    ]
    return sorted(s for s in schemas if (s.startswith("raw_") and not s.endswith("_staging")) or s in HISTORY_SCHEMAS)


def tables_of(con, schema: str) -> dict[str, list[Column]]:
    rows = con.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
        "WHERE c.table_schema = ? AND t.table_type = 'BASE TABLE' AND c.table_catalog = current_database() "
        "ORDER BY c.table_name, c.ordinal_position",
        [schema],
    ).fetchall()
    tables: dict[str, list[Column]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, []).append(Column(column, data_type))
    return tables


def _csv(batch: pa.RecordBatch) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(pa.Table.from_batches([batch]), out, pacsv.WriteOptions(include_header=False))
    return out.getvalue()


def copy_table(source, target_raw, schema: str, table: str, columns: list[Column]) -> int:
    """Replace `schema.table` on PostgreSQL with the DuckDB table's rows, in one transaction."""
    qualified = f"{_quote(schema)}.{_quote(table)}"
    names = ", ".join(_quote(c.name) for c in columns)
    definition = ", ".join(f"{_quote(c.name)} {c.pg_type}" for c in columns)
    reader = source.sql(f"SELECT {', '.join(c.select for c in columns)} FROM {qualified}").to_arrow_reader(BATCH_ROWS)
    rows = 0
    with target_raw, target_raw.cursor() as cur:  # one transaction: committed whole, or not at all
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
        cur.execute(f"DROP TABLE IF EXISTS {qualified} CASCADE")
        cur.execute(f"CREATE TABLE {qualified} ({definition})")
        for batch in reader:
            if batch.num_rows:
                cur.copy_expert(f"COPY {qualified} ({names}) FROM STDIN WITH (FORMAT csv)", io.BytesIO(_csv(batch)))
                rows += batch.num_rows
    return rows


def copy_history(
    duckdb_path: Path,
    target: Warehouse,
    schemas: Iterable[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Copied]:
    """Copy the raw and history schemas of the DuckDB file at `duckdb_path` into `target`, a
    PostgreSQL warehouse. Returns what was copied, table by table."""
    if not target.is_postgres:
        raise ValueError("the target of a move is a PostgreSQL warehouse (SPINE_WAREHOUSE_TARGET=postgres)")
    if not duckdb_path.is_file():
        raise FileNotFoundError(f"no DuckDB warehouse at {duckdb_path}")
    target.ensure_database()
    copied: list[Copied] = []
    with duckdb.connect(str(duckdb_path), read_only=True) as source:
        raw = psycopg2.connect(target.postgres_url, application_name="data_spine migrate")
        try:
            for schema in schemas or raw_and_history_schemas(source):
                for table, columns in tables_of(source, schema).items():
                    rows = copy_table(source, raw, schema, table, columns)
                    copied.append(Copied(schema, table, rows))
                    progress(f"  {schema}.{table}: {rows:,} rows")
        finally:
            raw.close()
    return copied
