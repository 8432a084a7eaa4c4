"""The classification of every column of the warehouse, declared once and inherited.

Declared: a raw column in its source's raw contract (connectors/contracts/<source>.yml, with
dlt's own columns and tables and the quarantine table classified in connectors/contract.py); a
model's or seed's column in its yml, as `meta: {classification, personal_data, identifies}`
(read from the dbt manifest). dbt's build fails on a model column without one (the
`check_column_classification` hook); `unclassified_raw_columns` holds the raw tables of a
warehouse to their contracts the same way.

Inherited: each model column's upstream columns come from its compiled SQL (sqlglot's column
lineage, `lineage`). A column deriving from a restricted column is restricted, unless its meta
says why not (`classification_reason`): `effective` gives every column's classification after
that rule, `violations` names the columns declared less strict than it without a reason (and
the model columns without a valid classification).

`personal_columns(schema, table)` is what erasure and access code read: the columns of a
warehouse table that hold personal data, for raw tables (`raw_<source>`, and dlt's
`raw_<source>_staging` copies), dbt's schemas and `serving` (copies of the marts).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.lineage import Node
from sqlglot.lineage import lineage as sqlglot_lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope

from connectors import contract
from connectors.contract import Classification
from connectors.pipelines import DATASETS
from data_spine.settings import PROJECT_ROOT

__all__ = [
    "Classification",
    "Lineage",
    "PersonalColumn",
    "column_tags",
    "effective",
    "lineage",
    "load_classification",
    "personal_columns",
    "raw_table_classification",
    "strictest",
    "unclassified_raw_columns",
    "violations",
]

# Where `dbt parse` (spine prepare) and `dbt compile` leave the project's manifest.
MANIFEST = PROJECT_ROOT / "dbt_project" / "target" / "manifest.json"
RESTRICTED = "restricted"
# A warehouse relation, (schema, table), and one of its columns.
Relation = tuple[str, str]
Key = tuple[Relation, str]
# Serving tables are copies of the marts, column for column (quality/publishing.py).
COPIES = {"serving": "marts"}
# dlt loads a merge through a staging dataset of its own, `<dataset>_staging`, holding the same tables.
DLT_STAGING_SUFFIX = "_staging"
SOURCE_OF_DATASET = {dataset: source for source, dataset in DATASETS.items()}


@dataclass(frozen=True)
class PersonalColumn:
    """A column that holds personal data: its kind and, for an id of a person, whose id it is."""

    name: str
    classification: str | None
    personal_data: str
    identifies: str | None = None


def read_manifest(path: Path | None = None) -> dict[str, Any]:
    """The dbt manifest at `path` (default: the project's target folder), parsed once per version of the file."""
    path = Path(path or MANIFEST)
    if not path.exists():
        raise FileNotFoundError(f"no dbt manifest at {path}: prepare it first with `spine prepare` (or `dbt parse`)")
    return _parsed(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parsed(path: str, _version: int) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _manifest(manifest: Mapping[str, Any] | Path | str | None) -> Mapping[str, Any]:
    return manifest if isinstance(manifest, Mapping) else read_manifest(Path(manifest) if manifest else None)


def _dbt_nodes(manifest: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """The models and seeds: the dbt nodes that are warehouse relations."""
    for node in manifest.get("nodes", {}).values():
        if node["resource_type"] in ("model", "seed") and node.get("config", {}).get("materialized") != "ephemeral":
            yield node


def relation_of(node: Mapping[str, Any]) -> Relation:
    return node["schema"], node.get("alias") or node["name"]


def _raw_source(schema: str) -> str | None:
    return SOURCE_OF_DATASET.get(schema.removesuffix(DLT_STAGING_SUFFIX)) or SOURCE_OF_DATASET.get(schema)


@functools.cache
def _raw_declared() -> dict[Key, Classification]:
    declared = {}
    for source in contract.sources():
        for name, table in contract.contract(source).items():
            relation = (DATASETS[source], name)
            for column in table.columns.values():
                declared[relation, column.name] = column.classification
            for column in contract.DLT_COLUMNS:
                declared[relation, column] = contract.DLT_CLASSIFICATION
            for column, classification in table.other_columns.items():
                if not any(ch in column for ch in "*?["):
                    declared[relation, column] = classification
    return declared


def load_classification(manifest: Mapping[str, Any] | Path | str | None = None) -> dict[Key, Classification]:
    """Every declared column: ((schema, table), column) -> its classification as declared, for
    the raw contracts' columns and every model's and seed's yml columns (a column declared
    without one has `level` None)."""
    declared = dict(_raw_declared())
    for node in _dbt_nodes(_manifest(manifest)):
        relation = relation_of(node)
        for name, column in node.get("columns", {}).items():
            declared[relation, name] = Classification.of(column.get("meta"))
    return declared


def personal_columns(
    schema: str, table: str, manifest: Mapping[str, Any] | Path | str | None = None, columns: Iterable[str] = ()
) -> list[PersonalColumn]:
    """The columns of a warehouse table that hold personal data (`personal_data` declared), in
    declaration order: a raw table's from its contract, a model's or seed's from the manifest
    (`serving.<mart>` as `marts.<mart>`). `columns`, the table's actual columns, adds those a
    contract classifies by pattern or as variants of personal columns. Empty for a table nothing
    declares (the quality and privacy schemas, dlt's bookkeeping)."""
    found: dict[str, Classification] = {}
    source = _raw_source(schema)
    if source is not None:
        declared = contract.table(source, table)
        if declared is not None:
            found.update({c.name: c.classification for c in declared.columns.values()})
            found.update(declared.other_columns)
        for column in columns:
            classified = contract.classification(source, table, column)
            if classified is not None:
                found[column] = classified
    else:
        relation = (COPIES.get(schema, schema), table)
        for node in _dbt_nodes(_manifest(manifest)):
            if relation_of(node) == relation:
                found.update({n: Classification.of(c.get("meta")) for n, c in node.get("columns", {}).items()})
    return [
        PersonalColumn(name, c.level, c.personal_data, c.identifies)
        for name, c in found.items()
        if c.personal_data and not any(ch in name for ch in "*?[")
    ]


def column_tags(classification: Classification | None) -> dict[str, str]:
    """A column's classification as tags (the Dagster column schema's): classification, and
    personal_data and identifies when declared."""
    if classification is None or classification.level is None:
        return {}
    tags = {"classification": classification.level}
    if classification.personal_data:
        tags["personal_data"] = classification.personal_data
    if classification.identifies:
        tags["identifies"] = classification.identifies
    return tags


def strictest(classifications: Iterable[Classification | None]) -> str | None:
    """The strictest class among these (None when none is classified)."""
    levels = [c.level for c in classifications if c is not None and c.level is not None]
    return max(levels, key=_rank) if levels else None


def raw_table_classification(source: str, name: str) -> dict[str, Classification]:
    """What a raw table's contract classifies, column by column (its declared columns, then
    dlt's, then the other columns it names or matches), empty for a table without a contract."""
    declared = contract.table(source, name)
    if declared is None:
        return {}
    return (
        {c.name: c.classification for c in declared.columns.values()}
        | dict.fromkeys(contract.DLT_COLUMNS, contract.DLT_CLASSIFICATION)
        | declared.other_columns
    )


def unclassified_raw_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every column of the open warehouse's raw tables (every `raw_*` schema of a source,
    dlt's staging copies included) that nothing classifies, as `schema.table.column`."""
    rows = con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema LIKE 'raw\\_%' ESCAPE '\\' ORDER BY 1, 2, 3"
    ).fetchall()
    missing = []
    for schema, table, column in rows:
        source = _raw_source(schema)
        classified = contract.classification(source, table, column) if source else None
        if classified is None or classified.problems():
            missing.append(f"{schema}.{table}.{column}")
    return missing


@dataclass
class Lineage:
    """Each model column's upstream columns (the warehouse columns its value is computed from),
    the columns sqlglot could not trace (with why), and how long tracing took."""

    upstream: dict[Key, frozenset[Key]] = field(default_factory=dict)
    untraced: dict[Key, str] = field(default_factory=dict)
    seconds: float = 0.0


def _sqlglot_schema(manifest: Mapping[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """Every relation's columns as sqlglot's qualifier reads them: the raw contracts' and
    every model's and seed's declared columns (their types do not matter to lineage)."""
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for (relation, column), _ in load_classification(manifest).items():
        schema.setdefault(relation[0], {}).setdefault(relation[1], {})[column] = "VARCHAR"
    return schema


def _leaves(node: Node) -> set[Key]:
    found = set()
    for n in node.walk():
        source = n.source
        if not n.downstream and isinstance(source, exp.Table) and source.name:
            found.add(((source.db, source.name), n.name.split(".")[-1]))
    return found


def _trace(sql: str, schema: Mapping[str, Any]) -> dict[str, Node]:
    tree = sqlglot.parse_one(sql, read="duckdb")
    for table in tree.find_all(exp.Table):  # the warehouse file's name is no part of a relation
        table.set("catalog", None)
    tree = qualify(tree, schema=schema, dialect="duckdb", validate_qualify_columns=False, identify=False)
    return sqlglot_lineage(None, tree, schema=schema, dialect="duckdb", scope=build_scope(tree), copy=False)


def lineage(manifest: Mapping[str, Any] | Path | str | None = None) -> Lineage:
    """The upstream columns of every model column, from the compiled SQL in `manifest` (one
    `dbt compile` wrote; a model without compiled SQL has every column untraced)."""
    manifest = _manifest(manifest)
    schema = _sqlglot_schema(manifest)
    traced = Lineage()
    started = time.perf_counter()
    for node in _dbt_nodes(manifest):
        if node["resource_type"] != "model":
            continue
        relation = relation_of(node)
        columns = list(node.get("columns", {}))
        sql = node.get("compiled_code")
        if not sql:
            traced.untraced.update({(relation, c): "not compiled (run `dbt compile`)" for c in columns})
            continue
        try:
            nodes = _trace(sql, schema)
        except Exception as error:  # sqlglot raises many kinds; an untraced model is reported, not fatal
            traced.untraced.update({(relation, c): f"{type(error).__name__}: {error}"[:300] for c in columns})
            continue
        for column in columns:
            if column not in nodes:
                traced.untraced[relation, column] = "not an output column of the compiled SQL"
                continue
            try:
                ups = _leaves(nodes[column])
            except Exception as error:  # as above, for one column
                traced.untraced[relation, column] = f"{type(error).__name__}: {error}"[:300]
                continue
            traced.upstream[relation, column] = frozenset(u for u in ups if u[0] != relation)
    traced.seconds = time.perf_counter() - started
    return traced


def _rank(level: str | None) -> int:
    classes = contract.vocabulary()["classes"]
    return classes.index(level) if level in classes else -1


def effective(declared: Mapping[Key, Classification], traced: Lineage) -> dict[Key, Classification]:
    """Every declared column's classification once inheritance applies: restricted when any
    upstream column is (effectively) restricted and the column gives no `classification_reason`;
    as declared otherwise."""
    result: dict[Key, Classification] = {}

    def resolve(key: Key, trail: frozenset[Key]) -> Classification | None:
        if key in result:
            return result[key]
        own = declared.get(key)
        if own is None:
            return None
        if own.reason or own.level == RESTRICTED:
            result[key] = own
            return own
        ups = traced.upstream.get(key, frozenset())
        inherited = any(
            (c := resolve(u, trail | {key})) is not None and c.level == RESTRICTED for u in ups if u not in trail
        )
        result[key] = Classification(RESTRICTED, own.personal_data, own.identifies) if inherited else own
        return result[key]

    for key in declared:
        resolve(key, frozenset())
    return result


def _name(key: Key) -> str:
    (schema, table), column = key
    return f"{schema}.{table}.{column}"


def violations(manifest: Mapping[str, Any] | Path | str | None = None, traced: Lineage | None = None) -> list[str]:
    """What breaks the classification rules, one line each: a model or seed column without a
    valid classification, and a column declared less strict than a restricted column it derives
    from, without `classification_reason`. Lineage is traced from `manifest` unless given."""
    manifest = _manifest(manifest)
    declared = load_classification(manifest)
    traced = traced if traced is not None else lineage(manifest)
    found = []
    for node in _dbt_nodes(manifest):
        relation = relation_of(node)
        for column in node.get("columns", {}):
            problems = declared[relation, column].problems()
            if problems:
                found.append(f"{_name((relation, column))}: {'; '.join(problems)}")
    resolved = effective(declared, traced)
    for key, own in declared.items():
        now = resolved.get(key)
        if own.level is None or now is None or _rank(now.level) <= _rank(own.level):
            continue
        restricted = [u for u in traced.upstream.get(key, ()) if getattr(resolved.get(u), "level", None) == RESTRICTED]
        sources = sorted(map(_name, restricted))
        found.append(
            f"{_name(key)}: declared {own.level} but derives from restricted {', '.join(sources)}; "
            "declare it restricted, or say why it is not (meta classification_reason)"
        )
    return found
