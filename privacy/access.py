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
import yaml

from data_spine.settings import Settings
from data_spine.settings import settings as current_settings
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


def pseudonym_sql(expression: str) -> str:
    """`privacy.keys.pseudonym` in SQL, the key read from the session (never written in a view)."""
    hashed = sql_pseudonym(expression)
    if hashed.count("?") != 1:
        raise RuntimeError(f"privacy.keys.sql_pseudonym should take the key as its one parameter: {hashed}")
    missing = _literal(f"pseudonymous columns need the privacy key: SET VARIABLE {KEY_VARIABLE} = '<key>'")
    return f"CASE WHEN {_KEY} IS NULL THEN error({missing}) ELSE {hashed.replace('?', _KEY)} END"


def _column_sql(expression: str, mode: str) -> str:
    if mode == "masked":
        return masked_sql(expression)
    if mode == "pseudonymous":
        return pseudonym_sql(expression)
    return expression


def _dimension_sql(dimension: Dimension) -> str:
    column = quoted(dimension.column)
    if dimension.by:
        return f"CAST(date_trunc('{dimension.by}', {column}) AS DATE)"
    return column


def _aggregate_sql(grant: Grant, served: Sequence[str], modes: bool = True) -> str:
    source = f"{SERVING}.{quoted(grant.dataset)}"
    select = [
        f"{_column_sql(_dimension_sql(d), g.mode if modes else 'read')} AS {quoted(d.name)}"
        for d, g in grant.dimensions()
        if d.column in served
    ]
    select += [f"{sql} AS {quoted(name)}" for name, sql in grant.aggregate.measures.items()]
    return f"SELECT {', '.join(select)} FROM {source} GROUP BY ALL"


def view_sql(grant: Grant, served: Sequence[str]) -> str:
    """The SELECT of a role's view of one dataset (over `serving`)."""
    if grant.access == "aggregate_only":
        return _aggregate_sql(grant, served)
    source = f"{SERVING}.{quoted(grant.dataset)}"
    select = [
        f"{_column_sql(quoted(g.column.name), g.mode)} AS {quoted(g.column.name)}" for g in grant.readable(served)
    ]
    return f"SELECT {', '.join(select)} FROM {source}"


# --- building ------------------------------------------------------------------------------------


def served_columns(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Served table -> column -> DuckDB type, as the warehouse holds them."""
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


def _check_masked_types(policy: AccessPolicy, served: Mapping[str, Mapping[str, str]]) -> None:
    wrong = [
        f"roles.{role.name}: serving.{dataset}.{name} would be masked, but it is {served[dataset][name]}, not text"
        for role in policy.roles.values()
        for dataset, grant in role.grants.items()
        for name, g in grant.columns.items()
        if g.mode == "masked" and name in served.get(dataset, {}) and served[dataset][name] != "VARCHAR"
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
    warehouse: Path, data_dir: Path, settings: Settings, policy: AccessPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """Build every role's views in `warehouse` and its file under `<data_dir>/access` from what
    `serving` holds now. Returns, per role, its file, size, build seconds and, per dataset it
    reads, its access, rows and columns by mode (for run metadata).

    Refuses (ClassificationError) when a served column declares no classification, and
    (AccessPolicyError) when the policy is invalid; then no role file changes."""
    policy = policy or load_policy()
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


def connect_as(
    role: str, settings: Settings | None = None, policy_path: Path = POLICY_FILE
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the role's file: `serving.<dataset>` (or just `<dataset>`) is
    what the role may read of it. The connection reads no other file (no ATTACH, no
    read_csv/read_parquet of the warehouse's folder) and its settings are locked."""
    cfg = settings or current_settings()
    roles = _roles_declared(policy_path)
    if role not in roles:
        raise UnknownRole(f"unknown role {role!r}: the roles of {shown_path(policy_path)} are {', '.join(roles)}")
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


_MISSING_TABLE = re.compile(r'Table with name "?([\w.]+?)"? does not exist')
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found|does not have a column named "([^"]+)"')


def _tables_of(con: duckdb.DuckDBPyConnection, sql: str, known: Sequence[str]) -> list[str]:
    """The served datasets a query names."""
    try:
        named = {name.split(".")[-1].lower() for name in con.get_table_names(sql)}
    except duckdb.Error:
        named = {word.lower() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    return [d for d in known if d.lower() in named]


def explain(role: str, con: duckdb.DuckDBPyConnection, sql: str, error: duckdb.Error) -> AccessDenied | None:
    """The AccessDenied a failed query of a role's connection amounts to, if the table or column
    it could not find is one the role was not granted (else None: a plain mistake)."""
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


def query_as(role: str, sql: str, settings: Settings | None = None, params: Sequence[Any] | None = None) -> QueryResult:
    """Run a query as the role (on its file). A table or column the role was not granted raises
    AccessDenied naming it and the rule that denied it; any other error is DuckDB's."""
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
