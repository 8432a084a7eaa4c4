"""The warehouse's tables as the privacy code walks them."""

from __future__ import annotations

import duckdb

from privacy.classification import PersonalColumn, personal_columns


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def base_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Every table (not view) of the open database, in every schema: a view holds no data of its
    own, and erasing what a view reads erases what it shows. PostgreSQL lists its catalogs'
    tables as well, which hold none of ours."""
    return [
        (schema, table)
        for schema, table in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_catalog = current_database() "
            "AND table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"
        ).fetchall()
    ]


def columns_of(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, tuple[str, bool]]:
    """Column name -> (the warehouse's name of its type, nullable)."""
    return {
        name: (data_type, nullable == "YES")
        for name, data_type, nullable in con.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? AND table_catalog = current_database() "
            "ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    }


def personal_in(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[PersonalColumn]:
    """The table's personal columns that it actually has: a contract declares every column a
    vendor may send, and a vendor may leave some out."""
    actual = list(columns_of(con, schema, table))
    return [c for c in personal_columns(schema, table, columns=actual) if c.name in actual]
