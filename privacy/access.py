"""Role-scoped access to the served data, as privacy/access_policy.yml grants it.

After each publication, `publish_role_access` builds, for each role of the policy:

- in the warehouse, a schema `access_<role>` with one view per dataset the role reads, over
  `serving`: its granted columns only, masked or pseudonymised where the policy says, or the
  declared aggregate instead of the rows;
- `<data dir>/access/<role>.duckdb`, the role's own file: those views materialised under the
  same names as `serving` (`serving.customers`, ...), and the grants in schema `access`. A role
  opens its file read-only (`connect_as`), so what it does not hold it cannot read, and a
  query naming a column or table it was not granted fails; `query_as` turns that failure into
  `AccessDenied` saying what was denied and by which rule.

The pseudonyms of the views are computed with the privacy key (privacy/keys.py), which stays
out of the warehouse: a view reads it from the session variable `spine_privacy_key`, so the
views of a warehouse opened without the key refuse to run rather than hash without it. The
role files hold the hashed values only.

A role's file is written beside the old one and moved over it (`os.replace`): a reader holds
either the old file or the new, never half of one. A role removed from the policy loses its
file and its schema.

On PostgreSQL the roles are the database's (`publish_pg_role_access`): a group role per policy
role with column privileges on `serving` and its schema `access_<role>` of masked views and
materialized pseudonyms and aggregates; PostgreSQL refuses what the role was not granted, and
`query_as` tells the refusal with the rule behind it (privacy/README.md, "On PostgreSQL").
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import yaml

from data_spine.settings import Settings
from data_spine.settings import settings as current_settings
from data_spine.warehouse import PgConnection, Warehouse
from privacy.access_policy import (
    POLICY_FILE,
    AccessPolicy,
    AccessPolicyError,
    Dimension,
    Grant,
    UnknownRole,
    load_policy,
    require_classified,
    shown_path,
)
from privacy.keys import privacy_key, sql_pseudonym

SERVING = "serving"
SCHEMA_PREFIX = "access_"
KEY_VARIABLE = "spine_privacy_key"
_KEY = f"getvariable('{KEY_VARIABLE}')"
# On PostgreSQL: the database role of each policy role, and where the build keeps the key.
PG_ROLE_PREFIX = "spine_"
PG_KEY_SETTING = "spine.privacy_key"
# Set for the build's transaction only; '' afterwards in the same session, which gives NULL,
# never a hash without the key. A session that never set it fails on the unknown setting.
_PG_KEY = f"NULLIF(current_setting('{PG_KEY_SETTING}'), '')"
# Marks the database roles the policy owns (roles are the cluster's, shared by its databases).
PG_ROLE_COMMENT = "Data Spine access role"


class AccessDenied(PermissionError):
    """A role asked for data its grants do not include."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def role_schema(role: str) -> str:
    return SCHEMA_PREFIX + role


def role_file(access_dir: Path, role: str) -> Path:
    return access_dir / f"{role}.duckdb"


# --- SQL of each mode --------------------------------------------------------------------------


def masked_sql(expression: str) -> str:
    """`expectations.masking.mask` in SQL: an email keeps the first letter of its local part and
    its domain (`j***@example.com`), other text its first letter (`J***`)."""
    e = expression
    return (
        f"CASE WHEN {e} IS NULL THEN NULL "
        f"WHEN strpos({e}, '@') > 0 "
        f"THEN left(split_part({e}, '@', 1), 1) || '***@' || substr({e}, strpos({e}, '@') + 1) "
        f"ELSE left({e}, 1) || '***' END"
    )


def pseudonym_sql(expression: str, dialect: str = "duckdb") -> str:
    """`privacy.keys.pseudonym` in SQL, the key read from the session (never written in a view)."""
    hashed = sql_pseudonym(expression, dialect)
    if hashed.count("?") != 1:
        raise RuntimeError(f"privacy.keys.sql_pseudonym should take the key as its one parameter: {hashed}")
    if dialect == "postgres":
        return hashed.replace("?", _PG_KEY)
    missing = _literal(f"pseudonymous columns need the privacy key: SET VARIABLE {KEY_VARIABLE} = '<key>'")
    return f"CASE WHEN {_KEY} IS NULL THEN error({missing}) ELSE {hashed.replace('?', _KEY)} END"


def _column_sql(expression: str, mode: str, dialect: str = "duckdb") -> str:
    if mode == "masked":
        return masked_sql(expression)
    if mode == "pseudonymous":
        return pseudonym_sql(expression, dialect)
    return expression


def _dimension_sql(dimension: Dimension) -> str:
    column = quoted(dimension.column)
    if dimension.by:
        return f"CAST(date_trunc('{dimension.by}', {column}) AS DATE)"
    return column


_MEDIAN = re.compile(r"\bmedian\s*\(([^()]*)\)", re.IGNORECASE)


def _measure_sql(sql: str, dialect: str) -> str:
    """A measure of the policy (DuckDB's aggregates) in the warehouse's dialect: PostgreSQL has
    no median, and its continuous percentile is what DuckDB's median of numbers is."""
    if dialect == "postgres":
        return _MEDIAN.sub(r"percentile_cont(0.5) WITHIN GROUP (ORDER BY \1)", sql)
    return sql


def _group_by(dimensions: int, dialect: str) -> str:
    if dialect == "postgres":  # no GROUP BY ALL: the dimensions lead the select list
        return f" GROUP BY {', '.join(str(n) for n in range(1, dimensions + 1))}" if dimensions else ""
    return " GROUP BY ALL"


def _aggregate_sql(grant: Grant, served: Sequence[str], modes: bool = True, dialect: str = "duckdb") -> str:
    source = f"{SERVING}.{quoted(grant.dataset)}"
    select = [
        f"{_column_sql(_dimension_sql(d), g.mode if modes else 'read', dialect)} AS {quoted(d.name)}"
        for d, g in grant.dimensions()
        if d.column in served
    ]
    dimensions = len(select)
    select += [f"{_measure_sql(sql, dialect)} AS {quoted(name)}" for name, sql in grant.aggregate.measures.items()]
    return f"SELECT {', '.join(select)} FROM {source}{_group_by(dimensions, dialect)}"


def view_sql(grant: Grant, served: Sequence[str], dialect: str = "duckdb") -> str:
    """The SELECT of a role's view of one dataset (over `serving`)."""
    if grant.access == "aggregate_only":
        return _aggregate_sql(grant, served, dialect=dialect)
    source = f"{SERVING}.{quoted(grant.dataset)}"
    select = [
        f"{_column_sql(quoted(g.column.name), g.mode, dialect)} AS {quoted(g.column.name)}"
        for g in grant.readable(served)
    ]
    return f"SELECT {', '.join(select)} FROM {source}"


# --- building ------------------------------------------------------------------------------------


def served_columns(con: duckdb.DuckDBPyConnection | PgConnection) -> dict[str, dict[str, str]]:
    """Served table -> column -> type (the warehouse's name of it), as the warehouse holds them."""
    served: dict[str, dict[str, str]] = {}
    for table, column, data_type in con.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
        "WHERE c.table_schema = ? AND c.table_catalog = current_database() AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, c.ordinal_position",
        [SERVING],
    ).fetchall():
        served.setdefault(table, {})[column] = data_type
    return served


def _is_text(data_type: str, dialect: str) -> bool:
    if dialect == "postgres":
        return data_type in ("character varying", "text")
    return data_type == "VARCHAR"


def _check_masked_types(policy: AccessPolicy, served: Mapping[str, Mapping[str, str]], dialect: str = "duckdb") -> None:
    wrong = [
        f"roles.{role.name}: serving.{dataset}.{name} would be masked, but it is {served[dataset][name]}, not text"
        for role in policy.roles.values()
        for dataset, grant in role.grants.items()
        for name, g in grant.columns.items()
        if g.mode == "masked" and name in served.get(dataset, {}) and not _is_text(served[dataset][name], dialect)
    ]
    if wrong:
        raise AccessPolicyError(f"{shown_path(policy.path)}: masking applies to text:\n  " + "\n  ".join(wrong))


def create_role_views(
    con: duckdb.DuckDBPyConnection, policy: AccessPolicy, served: Mapping[str, Sequence[str]]
) -> None:
    """Replace every role's schema of views (and drop the schemas of roles no longer in the
    policy), in one transaction."""
    existing = [
        s
        for (s,) in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
            "AND starts_with(schema_name, ?)",
            [SCHEMA_PREFIX],
        ).fetchall()
    ]
    con.execute("BEGIN TRANSACTION")
    try:
        for schema in existing:
            con.execute(f"DROP SCHEMA {quoted(schema)} CASCADE")
        for role in policy.roles.values():
            schema = quoted(role_schema(role.name))
            con.execute(f"CREATE SCHEMA {schema}")
            for dataset, grant in role.grants.items():
                if dataset not in served:
                    continue
                try:
                    con.execute(f"CREATE VIEW {schema}.{quoted(dataset)} AS {view_sql(grant, served[dataset])}")
                except duckdb.Error as e:
                    where = f"aggregates.{dataset}" if grant.access == "aggregate_only" else f"roles.{role.name}"
                    raise AccessPolicyError(
                        f"{shown_path(policy.path)}: {where}: the view of {dataset} fails: {e}"
                    ) from e
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


class _Aggregates:
    """Each aggregate computed once per build for all the roles that group it the same way.

    Roles differ in how a dimension reaches them (as is or pseudonymised), not in the grouping:
    a pseudonym stands for one id, so grouping by the ids and hashing them afterwards gives the
    role's view. The measures (distinct counts over millions of events) are the cost, and are
    paid once instead of once per role."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.tables: dict[tuple, str] = {}

    def source(self, grant: Grant, served: Sequence[str], view: str) -> str:
        """The SELECT that materialises the role's aggregate."""
        dimensions = [(d, g) for d, g in grant.dimensions() if d.column in served]
        if any(g.mode == "masked" for _, g in dimensions):  # masking merges groups: only the view is right
            return f"SELECT * FROM {view}"
        shape = (
            grant.dataset,
            tuple((d.column, d.by, d.name) for d, _ in dimensions),
            tuple(grant.aggregate.measures.items()),
        )
        if shape not in self.tables:
            table = f"role_aggregate_{len(self.tables)}"
            self.con.execute(f"CREATE TEMP TABLE {table} AS {_aggregate_sql(grant, served, modes=False)}")
            self.tables[shape] = table
        select = [f"{_column_sql(quoted(d.name), g.mode)} AS {quoted(d.name)}" for d, g in dimensions]
        select += [quoted(name) for name in grant.aggregate.measures]
        return f"SELECT {', '.join(select)} FROM {self.tables[shape]}"

    def drop(self) -> None:
        for table in self.tables.values():
            self.con.execute(f"DROP TABLE IF EXISTS {table}")


def _write_role_file(
    con: duckdb.DuckDBPyConnection,
    policy: AccessPolicy,
    role: str,
    served: Mapping[str, Sequence[str]],
    access_dir: Path,
    warehouse: Path,
    aggregates: _Aggregates,
) -> dict[str, Any]:
    started = time.monotonic()
    final = role_file(access_dir, role)
    building = access_dir / f".{role}.{os.getpid()}.building.duckdb"
    building.unlink(missing_ok=True)
    grants = policy.role(role).grants
    con.execute(f"ATTACH {_literal(str(building))} AS role_build")
    published: dict[str, Any] = {}
    try:
        con.execute("CREATE SCHEMA role_build.serving")
        con.execute("CREATE SCHEMA role_build.access")
        for dataset, grant in grants.items():
            if dataset not in served:
                continue
            view = f"{quoted(role_schema(role))}.{quoted(dataset)}"
            source = aggregates.source(grant, served[dataset], view) if grant.aggregate else f"SELECT * FROM {view}"
            con.execute(f"CREATE TABLE role_build.serving.{quoted(dataset)} AS {source}")
            rows = con.execute(f"SELECT count(*) FROM role_build.serving.{quoted(dataset)}").fetchone()[0]
            published[dataset] = _summary(grant, served[dataset], rows)
        _write_grants(con, policy, role, served, published, warehouse)
        con.execute("DETACH role_build")
    except BaseException:
        con.execute("DETACH DATABASE IF EXISTS role_build")
        building.unlink(missing_ok=True)
        raise
    # A write-ahead log left by an earlier writer of the old file would be replayed on the new one.
    Path(f"{final}.wal").unlink(missing_ok=True)
    os.replace(building, final)
    return {
        "file": str(final),
        "bytes": final.stat().st_size,
        "seconds": round(time.monotonic() - started, 3),
        "datasets": published,
        "not_served": sorted(d for d in grants if d not in served),
    }


def _summary(grant: Grant, served: Sequence[str], rows: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"access": grant.access, "rows": rows}
    if grant.access == "aggregate_only":
        summary["columns"] = [d.name for d, _ in grant.dimensions() if d.column in served] + list(
            grant.aggregate.measures
        )
        return summary
    for mode in ("read", "masked", "pseudonymous", "hidden"):
        names = [n for n, g in grant.columns.items() if g.mode == mode and n in served]
        if names:
            summary[mode] = names
    return summary


def _write_grants(
    con: duckdb.DuckDBPyConnection,
    policy: AccessPolicy,
    role: str,
    served: Mapping[str, Sequence[str]],
    published: Mapping[str, Mapping[str, Any]],
    warehouse: Path,
) -> None:
    """The role's grants inside its file, so a denial is explained from the file it was denied by."""
    grants = policy.role(role).grants
    con.execute(
        "CREATE TABLE role_build.access.build (role VARCHAR, description VARCHAR, policy VARCHAR, "
        "policy_sha256 VARCHAR, warehouse VARCHAR, built_at TIMESTAMP)"
    )
    con.execute(
        "INSERT INTO role_build.access.build VALUES (?, ?, ?, ?, ?, ?)",
        [
            role,
            policy.role(role).description,
            shown_path(policy.path),
            policy.sha256,
            str(warehouse),
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )
    con.execute(
        "CREATE TABLE role_build.access.datasets (dataset VARCHAR, access VARCHAR, rule VARCHAR, "
        "columns VARCHAR[], rows BIGINT)"
    )
    con.execute(
        "CREATE TABLE role_build.access.columns (dataset VARCHAR, column_name VARCHAR, mode VARCHAR, "
        "rule VARCHAR, classification VARCHAR, personal_data VARCHAR)"
    )
    datasets, columns = [], []
    for dataset in sorted(served):
        grant = grants.get(dataset)
        if grant is None:
            datasets.append([dataset, "denied", policy.denial(role, dataset), [], None])
            continue
        shown = published[dataset]
        outputs = shown.get("columns") or [n for m in ("read", "masked", "pseudonymous") for n in shown.get(m, [])]
        datasets.append([dataset, grant.access, grant.rule, outputs, shown["rows"]])
        for name, g in grant.columns.items():
            if name not in served[dataset]:
                continue
            mode, rule = g.mode, g.rule
            if grant.access == "aggregate_only" and name not in outputs:
                mode, rule = "aggregated", grant.rule
            columns.append([dataset, name, mode, rule, g.column.classification, g.column.personal_data])
    con.executemany("INSERT INTO role_build.access.datasets VALUES (?, ?, ?, ?, ?)", datasets)
    if columns:
        con.executemany("INSERT INTO role_build.access.columns VALUES (?, ?, ?, ?, ?, ?)", columns)


def publish_role_access(
    warehouse: Path | Warehouse, data_dir: Path, settings: Settings, policy: AccessPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """Build every role's views in `warehouse` and its file under `<data_dir>/access` from what
    `serving` holds now. Returns, per role, its file, size, build seconds and, per dataset it
    reads, its access, rows and columns by mode (for run metadata).

    On PostgreSQL (a `Warehouse` of that target, or a path while the settings choose it) the
    roles are the database's instead: see `publish_pg_role_access`.

    Refuses (ClassificationError) when a served column declares no classification, and
    (AccessPolicyError) when the policy is invalid; then no role file changes."""
    policy = policy or load_policy()
    if isinstance(warehouse, Warehouse):
        if warehouse.is_postgres:
            return publish_pg_role_access(warehouse, settings, policy)
        warehouse = warehouse.duckdb_path
    elif settings.warehouse_target == "postgres":
        return publish_pg_role_access(Warehouse.of(settings), settings, policy)
    access_dir = data_dir / "access"
    access_dir.mkdir(parents=True, exist_ok=True)
    key = privacy_key(settings).decode()
    published: dict[str, dict[str, Any]] = {}
    with duckdb.connect(str(warehouse), config={"memory_limit": settings.quality.duckdb_memory_limit}) as con:
        served = served_columns(con)
        require_classified(policy.catalog, served)
        _check_masked_types(policy, served)
        # The warehouse's write lock is held from here: no other publisher writes these files.
        for stale in access_dir.glob(".*.building.duckdb*"):
            stale.unlink(missing_ok=True)
        started = time.monotonic()
        create_role_views(con, policy, served)
        views_seconds = time.monotonic() - started
        con.execute(f"SET VARIABLE {KEY_VARIABLE} = ?", [key])
        aggregates = _Aggregates(con)
        try:
            for role in policy.roles:
                published[role] = _write_role_file(con, policy, role, served, access_dir, warehouse, aggregates)
        finally:
            con.execute(f"RESET VARIABLE {KEY_VARIABLE}")
            aggregates.drop()
    for path in access_dir.glob("*.duckdb"):
        if path.stem not in policy.roles:
            path.unlink(missing_ok=True)
            Path(f"{path}.wal").unlink(missing_ok=True)
    for summary in published.values():
        summary["views_seconds"] = round(views_seconds, 3)
    return published


# --- PostgreSQL: the policy as database roles ----------------------------------------------------


def pg_role(role: str) -> str:
    """The database role (NOLOGIN, a group) of a policy role; people and services log in as its
    members (`create_pg_login`)."""
    return PG_ROLE_PREFIX + role


def _pg_object(grant: Grant, served: Sequence[str]) -> str | None:
    """What stands for a role's dataset in its schema on PostgreSQL, if anything.

    - `materialized`: aggregates and pseudonyms are computed by the build, with the key it holds
      for its transaction only. A plain view would compute them in the reader's query, where
      the reader must be allowed every function the view calls and would need the key.
    - `view`: masked columns, a view running with its owner's rights, so the role reads the
      masked expression and never the column.
    - None: every column the role reads is as served; it reads `serving` itself, through its
      column privileges, and a hidden column is the database's "permission denied". A view
      could not offer `SELECT *` instead: PostgreSQL checks every column a view reads.
    """
    if grant.access == "aggregate_only":
        return "materialized"
    modes = {g.mode for g in grant.readable(served)}
    if "pseudonymous" in modes:
        return "materialized"
    return "view" if "masked" in modes else None


def ensure_pg_roles(con: PgConnection, policy: AccessPolicy) -> None:
    """Every policy role as a NOLOGIN group role. Roles belong to the whole server: a build of
    another database (or a concurrent one) may have made them, and their attributes are only
    changed when they differ."""
    names = [pg_role(r) for r in policy.roles]
    existing = {
        name: (can_login, comment)
        for name, can_login, comment in con.execute(
            "SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = ANY(?)",
            [names],
        ).fetchall()
    }
    for role in policy.roles.values():
        name, comment = pg_role(role.name), f"{PG_ROLE_COMMENT}: {role.description}"
        if name not in existing:
            try:
                con.execute(f"CREATE ROLE {quoted(name)} NOLOGIN")
            except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
                pass  # created by a concurrent build since we looked
        elif existing[name][0]:
            con.execute(f"ALTER ROLE {quoted(name)} NOLOGIN")
        if name not in existing or existing[name][1] != comment:
            try:
                con.execute(f"COMMENT ON ROLE {quoted(name)} IS {_literal(comment)}")
            except psycopg2.errors.InternalError:
                pass  # "tuple concurrently updated": a concurrent build wrote the same comment


def _pg_managed_roles(con: PgConnection, policy: AccessPolicy) -> list[str]:
    """The policy's roles and those an earlier policy made (marked by their comment): the grants
    of this database are rebuilt for all of them, so a role removed from the policy reads nothing."""
    marked = [
        name
        for (name,) in con.execute(
            "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE ?",
            [PG_ROLE_COMMENT + ":%"],
        ).fetchall()
    ]
    return sorted({*marked, *(pg_role(r) for r in policy.roles)})


def publish_pg_role_access(
    warehouse: Warehouse, settings: Settings, policy: AccessPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """The policy as PostgreSQL privileges, rebuilt whole in one transaction after each publication:

    - a NOLOGIN group role `spine_<role>` per policy role;
    - `serving`: USAGE, and SELECT on the columns the role reads as served (the whole table when
      it reads every column), nothing on a dataset it reads only as an aggregate or not at all;
      so naming a hidden, masked or pseudonymised column of `serving` is PostgreSQL's
      "permission denied";
    - a schema `access_<role>` with the role's version of each dataset it reads, under the
      dataset's name (the same SELECTs as the DuckDB views, see `_pg_object`), SELECT granted.

    What an earlier build granted and the policy no longer does is revoked (the schemas are
    dropped and made again, every grant on `serving` revoked first); readers see the old
    privileges or the new, never a mix. The policy restricts no rows, so no row-level security
    policy is made. Returns per role its schema, database role, seconds and datasets."""
    policy = policy or load_policy()
    key = privacy_key(settings).decode()
    published: dict[str, dict[str, Any]] = {}
    with warehouse.connect() as con:
        served = served_columns(con)
        require_classified(policy.catalog, served)
        _check_masked_types(policy, served, "postgres")
        started = time.monotonic()
        ensure_pg_roles(con, policy)
        con.begin()
        try:
            # One build at a time per database: each drops and makes the same schemas.
            con.execute("SELECT pg_advisory_xact_lock(hashtext('spine role access'))")
            con.execute("SELECT set_config(?, ?, true)", [PG_KEY_SETTING, key])
            for (schema,) in con.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, ?)", [SCHEMA_PREFIX]
            ).fetchall():
                con.execute(f"DROP SCHEMA {quoted(schema)} CASCADE")
            if con.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", [SERVING]).fetchone() is None:
                con.execute(f"CREATE SCHEMA {SERVING}")  # nothing published yet: every role reads nothing
            for name in _pg_managed_roles(con, policy):
                con.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SERVING} FROM {quoted(name)}")
                con.execute(f"REVOKE ALL ON SCHEMA {SERVING} FROM {quoted(name)}")
            views_seconds = time.monotonic() - started
            for role in policy.roles.values():
                role_started = time.monotonic()
                datasets = _grant_pg_role(con, policy, role.name, served)
                published[role.name] = {
                    "schema": role_schema(role.name),
                    "database_role": pg_role(role.name),
                    "seconds": round(time.monotonic() - role_started, 3),
                    "datasets": datasets,
                    "not_served": sorted(d for d in role.grants if d not in served),
                }
            con.commit()
        except BaseException:
            con.rollback()
            raise
    for summary in published.values():
        summary["views_seconds"] = round(views_seconds, 3)
    return published


def _grant_pg_role(
    con: PgConnection, policy: AccessPolicy, role: str, served: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    name, schema = quoted(pg_role(role)), quoted(role_schema(role))
    con.execute(f"CREATE SCHEMA {schema}")
    con.execute(f"GRANT USAGE ON SCHEMA {schema}, {SERVING} TO {name}")
    datasets: dict[str, Any] = {}
    for dataset, grant in policy.role(role).grants.items():
        if dataset not in served:
            continue
        columns = served[dataset]
        table = f"{SERVING}.{quoted(dataset)}"
        if grant.access == "read":
            as_served = [n for n, g in grant.columns.items() if g.mode == "read" and n in columns]
            if set(as_served) == set(columns):
                con.execute(f"GRANT SELECT ON {table} TO {name}")
            elif as_served:
                con.execute(f"GRANT SELECT ({', '.join(map(quoted, as_served))}) ON {table} TO {name}")
        kind = _pg_object(grant, columns)
        if kind is None:
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            datasets[dataset] = {**_summary(grant, columns, rows), "object": f"{SERVING}.{dataset}"}
            continue
        target = f"{schema}.{quoted(dataset)}"
        select = view_sql(grant, columns, "postgres")
        try:
            con.execute(f"CREATE {'MATERIALIZED VIEW' if kind == 'materialized' else 'VIEW'} {target} AS {select}")
        except psycopg2.Error as e:
            where = f"aggregates.{dataset}" if grant.access == "aggregate_only" else f"roles.{role}"
            raise AccessPolicyError(
                f"{shown_path(policy.path)}: {where}: the view of {dataset} fails: {str(e).strip()}"
            ) from e
        con.execute(f"GRANT SELECT ON {target} TO {name}")
        rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        datasets[dataset] = {**_summary(grant, columns, rows), "object": f"{kind} {role_schema(role)}.{dataset}"}
    return datasets


def create_pg_login(warehouse: Warehouse, role: str, user: str, password: str | None = None) -> None:
    """A login role for a person or a service, member of the policy role's group role, reading
    the role's schema first (`SELECT * FROM customers` is its version of the customers)."""
    load_policy().role(role)
    with warehouse.connect() as con:
        exists = con.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", [user]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        con.execute(
            f"{verb} ROLE {quoted(user)} LOGIN" + (" PASSWORD ?" if password else ""),
            [password] if password else None,
        )
        con.execute(f"GRANT {quoted(pg_role(role))} TO {quoted(user)}")
        database = warehouse.pg_parts()["dbname"]
        con.execute(
            f"ALTER ROLE {quoted(user)} IN DATABASE {quoted(database)} "
            f"SET search_path = {quoted(role_schema(role))}, {SERVING}"
        )


# --- reading as a role ---------------------------------------------------------------------------


_declared_roles: dict[tuple[Path, int, int], list[str]] = {}


def _roles_declared(path: Path) -> list[str]:
    """The roles of the policy file, without checking it against the columns: enough to refuse a
    role that does not exist. Read again only when the file changed (parsing it costs as much as
    opening a role's file)."""
    stat = path.stat()
    version = (path, stat.st_mtime_ns, stat.st_size)
    if version not in _declared_roles:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise AccessPolicyError(f"{shown_path(path)} is not valid YAML: {e}") from None
        _declared_roles.clear()
        _declared_roles[version] = list((raw.get("roles") or {}) if isinstance(raw, dict) else {})
    return _declared_roles[version]


def _postgres(cfg: Settings, warehouse: Warehouse | None) -> Warehouse | None:
    """The PostgreSQL warehouse a role reads, when that is the target."""
    if warehouse is not None:
        return warehouse if warehouse.is_postgres else None
    return Warehouse.of(cfg) if cfg.warehouse_target == "postgres" else None


def connect_as(
    role: str, settings: Settings | None = None, policy_path: Path = POLICY_FILE, warehouse: Warehouse | None = None
) -> duckdb.DuckDBPyConnection | PgConnection:
    """A read-only connection to the role's file: `serving.<dataset>` (or just `<dataset>`) is
    what the role may read of it. The connection reads no other file (no ATTACH, no
    read_csv/read_parquet of the warehouse's folder) and its settings are locked.

    On PostgreSQL, a read-only session of the warehouse acting as the role's database role
    (`SET ROLE spine_<role>`), its names resolving in `access_<role>` and then `serving`: the
    database refuses what the role was not granted. The session's own user could `RESET ROLE`:
    this is for the platform and its tests; a person or a service logs in as a member of the
    role (`create_pg_login`), which cannot."""
    cfg = settings or current_settings()
    roles = _roles_declared(policy_path)
    if role not in roles:
        raise UnknownRole(f"unknown role {role!r}: the roles of {shown_path(policy_path)} are {', '.join(roles)}")
    postgres = _postgres(cfg, warehouse)
    if postgres is not None:
        return _connect_as_pg(role, postgres)
    path = role_file(cfg.access_dir, role)
    if not path.exists():
        raise FileNotFoundError(
            f"no access file for role {role!r} at {path}: it is built after each publication "
            "(privacy.access.publish_role_access)"
        )
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
    con.execute(f"SET search_path = {_literal(SERVING)}")
    con.execute("SET lock_configuration = true")
    return con


def _connect_as_pg(role: str, warehouse: Warehouse) -> PgConnection:
    con = warehouse.connect(read_only=True)
    try:
        if con.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", [role_schema(role)]).fetchone() is None:
            raise FileNotFoundError(
                f"no schema {role_schema(role)} for role {role!r} in database {warehouse.pg_parts()['dbname']}: "
                "it is built after each publication (privacy.access.publish_role_access)"
            )
        con.execute(f"SET ROLE {quoted(pg_role(role))}")
        con.execute(f"SET search_path = {quoted(role_schema(role))}, {SERVING}")
    except BaseException:
        con.close()
        raise
    return con


_MISSING_TABLE = re.compile(r'Table with name "?([\w.]+?)"? does not exist')
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found|does not have a column named "([^"]+)"')


def _tables_of(con: duckdb.DuckDBPyConnection, sql: str, known: Sequence[str]) -> list[str]:
    """The served datasets a query names."""
    try:
        named = {name.split(".")[-1].lower() for name in con.get_table_names(sql)}
    except duckdb.Error:
        named = {word.lower() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    return [d for d in known if d.lower() in named]


def explain(
    role: str, con: duckdb.DuckDBPyConnection | PgConnection, sql: str, error: Exception
) -> AccessDenied | None:
    """The AccessDenied a failed query of a role's connection amounts to, if the table or column
    it could not find is one the role was not granted (else None: a plain mistake)."""
    if isinstance(con, PgConnection):
        return explain_pg(role, sql, error)
    message = str(error)
    policy = con.execute("SELECT policy FROM access.build").fetchone()[0]
    datasets = dict(con.execute("SELECT dataset, access FROM access.datasets").fetchall())
    found = _MISSING_TABLE.search(message)
    if found:
        dataset = found.group(1).split(".")[-1].lower()
        if datasets.get(dataset) == "denied":
            rule = con.execute("SELECT rule FROM access.datasets WHERE dataset = ?", [dataset]).fetchone()[0]
            return AccessDenied(f"role {role!r} may not read {SERVING}.{dataset} (not granted by {policy}: {rule})")
        return None
    found = _MISSING_COLUMN.search(message)
    if not found:
        return None
    asked = found.group(1) or found.group(2)
    for dataset in _tables_of(con, sql, list(datasets)):
        # DuckDB matches column names whatever their case, so the grants are looked up alike.
        row = con.execute(
            "SELECT c.column_name, c.mode, c.rule, d.columns FROM access.columns c JOIN access.datasets d "
            "USING (dataset) WHERE c.dataset = ? AND lower(c.column_name) = lower(?) "
            "AND c.mode IN ('hidden', 'aggregated')",
            [dataset, asked],
        ).fetchone()
        if row is None:
            continue
        column, mode, rule, outputs = row
        if mode == "hidden":
            why = f"hidden by {policy}: {rule}"
        else:
            why = f"{policy} grants {SERVING}.{dataset} as an aggregate only ({rule}) of {', '.join(outputs)}"
        return AccessDenied(f"role {role!r} may not read {SERVING}.{dataset}.{column} ({why})")
    return None


def _denied_column(role: str, dataset: str, column: str, grant: Grant, policy: AccessPolicy) -> AccessDenied:
    path = shown_path(policy.path)
    g = grant.columns.get(column)
    if grant.access == "aggregate_only":
        outputs = ", ".join(grant.output_columns())
        why = f"{path} grants {SERVING}.{dataset} as an aggregate only ({grant.rule}) of {outputs}"
    elif g is None or g.mode == "hidden":
        why = f"hidden by {path}: {g.rule if g else 'no rule grants it'}"
    else:
        why = f"{g.mode} by {path}: {g.rule}; {role_schema(role)}.{dataset} has it {g.mode}"
    return AccessDenied(f"role {role!r} may not read {SERVING}.{dataset}.{column} ({why})")


_PG_DENIED_SCHEMA = re.compile(r"permission denied for schema (\S+)")
_PG_DENIED_RELATION = re.compile(r"permission denied for (?:table|view|materialized view|relation) (\S+)")
_PG_MISSING_COLUMN = re.compile(r'column "?([^"\s]+)"? does not exist')
_PG_MISSING_RELATION = re.compile(r'relation "?([^"\s]+)"? does not exist')


def explain_pg(role: str, sql: str, error: Exception, policy: AccessPolicy | None = None) -> AccessDenied | None:
    """`explain` of PostgreSQL's refusals: "permission denied" for a dataset, a column of
    `serving` or another role's schema, and a column the role's version of a dataset lacks."""
    if not isinstance(error, psycopg2.Error):
        return None
    policy = policy or load_policy()
    grants = policy.role(role).grants
    message = str(error).strip()
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    if isinstance(error, psycopg2.errors.InsufficientPrivilege):
        found = _PG_DENIED_SCHEMA.search(message)
        if found:
            schema = found.group(1).strip('"')
            if schema.startswith(SCHEMA_PREFIX) and schema != role_schema(role):
                owner = schema[len(SCHEMA_PREFIX) :]
                return AccessDenied(f"role {role!r} may not read {schema}: it holds what role {owner!r} reads")
            return AccessDenied(f"role {role!r} may not read schema {schema}: {policy.path.name} grants only {SERVING}")
        found = _PG_DENIED_RELATION.search(message)
        if not found:
            return None
        dataset = found.group(1).strip('"').split(".")[-1]
        if dataset in policy.catalog and dataset not in grants:
            return AccessDenied(
                f"role {role!r} may not read {SERVING}.{dataset} "
                f"(not granted by {shown_path(policy.path)}: {policy.denial(role, dataset)})"
            )
        grant = grants.get(dataset)
        if grant is None:
            return None
        refused = [n for n, g in grant.columns.items() if grant.access == "aggregate_only" or g.mode != "read"]
        named = [n for n in refused if n.lower() in words]
        if named:
            return _denied_column(role, dataset, named[0], grant, policy)
        if refused and "*" in sql:
            denied = _denied_column(role, dataset, refused[0], grant, policy)
            return AccessDenied(f"{denied} - `*` reads every column: name the columns the role reads")
        return None
    if isinstance(error, psycopg2.errors.UndefinedColumn):
        found = _PG_MISSING_COLUMN.search(message)
        if not found:
            return None
        asked = found.group(1).split(".")[-1].lower()
        for dataset, grant in grants.items():
            if dataset not in words:
                continue
            for name, g in grant.columns.items():
                outputs = grant.output_columns()
                if name.lower() == asked and (g.mode == "hidden" or name not in outputs):
                    return _denied_column(role, dataset, name, grant, policy)
        return None
    if isinstance(error, psycopg2.errors.UndefinedTable):
        found = _PG_MISSING_RELATION.search(message)
        dataset = found.group(1).split(".")[-1] if found else None
        if dataset in policy.catalog and dataset not in grants:
            return AccessDenied(
                f"role {role!r} may not read {SERVING}.{dataset} "
                f"(not granted by {shown_path(policy.path)}: {policy.denial(role, dataset)})"
            )
    return None


def query_as(
    role: str,
    sql: str,
    settings: Settings | None = None,
    params: Sequence[Any] | None = None,
    warehouse: Warehouse | None = None,
) -> QueryResult:
    """Run a query as the role (on its file, or as its database role on PostgreSQL). A table or
    column the role was not granted raises AccessDenied naming it and the rule that denied it;
    any other error is the database's."""
    if _postgres(settings or current_settings(), warehouse) is not None:
        with connect_as(role, settings, warehouse=warehouse) as con:
            try:
                cursor = con.execute(sql, params)
                return QueryResult(cursor.columns(), cursor.fetchall())
            except psycopg2.Error as e:
                denied = explain_pg(role, sql, e)
                if denied is not None:
                    raise denied from e
                raise
    with connect_as(role, settings) as con:
        try:
            cursor = con.execute(sql, params) if params is not None else con.execute(sql)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            return QueryResult(columns, cursor.fetchall())
        except (duckdb.CatalogException, duckdb.BinderException) as e:
            denied = explain(role, con, sql, e)
            if denied is not None:
                raise denied from e
            raise
