"""Raw contracts: the columns each raw table promises dbt, whatever a batch happened to hold.

dlt creates a column only for a field it has seen a value of, so a field that is null or
absent in every record of a batch (an account that never used trials, a customer without
metadata, a Stripe version that dropped the field) would leave no column, and the staging
model reading it would stop the build. Each source therefore declares, in
`connectors/contracts/<source>.yml`, every raw column staging reads: its type as the vendor's
API reference documents it, whether the vendor always sends it (`required`), and what it
means. The connectors hand dlt every batch conformed to its table's contract:

- a declared column missing from the batch is added, typed, with nulls;
- a declared column of another type is cast to the declared one (a number where text is
  declared becomes its text; an object or list where JSON text is declared becomes its JSON);
- a value that cannot be cast (text where a number is declared) is nulled in the declared
  column and kept, as text, in `<column>__v_text`: dlt's own name for a variant column, so
  nothing the vendor sent is lost and the declared column keeps its type.

Columns a contract does not declare still evolve into new columns as dlt finds them.

Every raw column is also classified once here (the governance playbook's vocabulary, dbt var
`data_classification`): each declared column, and in a table's `other_columns` the fields a
vendor sends that land as columns though staging reads none of them (a name, or a pattern such
as `address__*`; neither typed nor conformed). dlt's own columns and tables and the quarantine
table are classified below, once for every source. `privacy/classification.py` holds the
warehouse's raw tables to it.
`tests/integration/test_contracts.py` holds staging to the contracts: no staging model reads a raw column
that is not declared, and staging builds on raw tables holding only the declared columns.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from dlt.common.normalizers.naming import snake_case

from connectors import quarantine
from data_spine.settings import PROJECT_ROOT

FOLDER = Path(__file__).resolve().parent / "contracts"
UTC = pa.timestamp("us", tz="UTC")
# dlt data types a contract may declare, and the Arrow type a conformed batch carries.
ARROW = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": UTC,
    # JSON documents (objects, lists) travel as their text; staging reads them with DuckDB's
    # JSON functions.
    "json": pa.string(),
}
# DuckDB's name for each type: what `empty_tables` creates.
SQL = {
    "text": "VARCHAR",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "VARCHAR",
}
VARIANT = "__v_text"
# dlt's variant columns of any type (`<column>__v_text`, `__v_double`, ...).
_VARIANT_OF = re.compile(r"__v_[a-z]+$")


@dataclass(frozen=True)
class Classification:
    """How sensitive a column is: `level` one of the vocabulary's classes (None: unclassified),
    `personal_data` the kind of personal data it holds, `identifies` whose id it is (only with
    `personal_data: identifier`), `reason` why it is less strict than what it derives from."""

    level: str | None
    personal_data: str | None = None
    identifies: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, meta: Mapping[str, Any] | None) -> Classification:
        """From a column's keys (a contract column, a dbt column's meta)."""
        meta = meta or {}
        return cls(
            meta.get("classification"),
            meta.get("personal_data"),
            meta.get("identifies"),
            meta.get("classification_reason"),
        )

    def problems(self) -> list[str]:
        """What is wrong with it against the vocabulary (empty when nothing is)."""
        words = vocabulary()
        found = []
        if self.level is None:
            found.append("no classification")
        elif self.level not in words["classes"]:
            found.append(f"classification {self.level!r} is none of {words['classes']}")
        if self.personal_data is not None and self.personal_data not in words["personal_data"]:
            found.append(f"personal_data {self.personal_data!r} is none of {words['personal_data']}")
        if self.identifies is not None and self.identifies not in words["identifies"]:
            found.append(f"identifies {self.identifies!r} is none of {words['identifies']}")
        # An identifier without `identifies` is a person's id in a system no erasure matches by
        # (a vendor's external id): it goes with its row.
        if self.identifies is not None and self.personal_data != "identifier":
            found.append("identifies goes with personal_data: identifier only")
        return found


@functools.cache
def vocabulary() -> dict[str, list[str]]:
    """The classification vocabulary: classes (least strict first), kinds of personal data,
    whose ids an identifier names. Declared once, for dbt and Python, in dbt_project.yml."""
    doc = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "dbt_project.yml").read_text())
    return doc["vars"]["data_classification"]


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    description: str
    # The vendor always sends a non-null value (a primary key, a creation instant).
    required: bool = False
    classification: Classification = Classification(None)


@dataclass(frozen=True)
class TableContract:
    source: str
    name: str
    description: str
    reference: str
    columns: dict[str, Column] = field(default_factory=dict)
    # Columns that land without staging reading them, by name or fnmatch pattern: classified only.
    other_columns: dict[str, Classification] = field(default_factory=dict)

    def classification(self, column: str) -> Classification | None:
        """A column of the raw table as the contract classifies it (a variant column as the
        column it holds the misfits of); None when it does not."""
        if column.startswith(DLT_PREFIX):
            return DLT_CLASSIFICATION
        base = _VARIANT_OF.sub("", column)
        if base in self.columns:
            return self.columns[base].classification
        if base in self.other_columns:
            return self.other_columns[base]
        return next((c for p, c in self.other_columns.items() if fnmatch.fnmatchcase(base, p)), None)

    def arrow_type(self, column: str) -> pa.DataType:
        return ARROW[self.columns[column].data_type]

    def empty(self) -> pa.Table:
        """A batch of no rows with every declared column: makes the table exist."""
        return pa.table({name: pa.array([], ARROW[c.data_type]) for name, c in self.columns.items()})

    def conform(self, table: pa.Table) -> pa.Table:
        """`table` with every declared column present and of its declared type (see module doc)."""
        fields: list[pa.Field] = []
        arrays: list[pa.ChunkedArray | pa.Array] = []
        variants: dict[str, pa.Array] = {}
        have = set()
        for f, array in zip(table.schema, table.columns):
            # Declared names are the warehouse's (dlt's snake_case: `createdAt` lands as `created_at`).
            name = _normalized(f.name)
            have.add(name)
            declared = self.columns.get(name)
            if declared is not None and f.type != ARROW[declared.data_type]:
                array, misfits = _fit(array, declared.data_type)
                if misfits is not None:
                    variants[f.name + VARIANT] = misfits
                f = pa.field(f.name, array.type, nullable=f.nullable)
            fields.append(f)
            arrays.append(array)
        for name, declared in self.columns.items():
            if name not in have:
                fields.append(pa.field(name, ARROW[declared.data_type]))
                arrays.append(pa.nulls(len(table), ARROW[declared.data_type]))
        for name, misfits in variants.items():
            if name not in have:
                fields.append(pa.field(name, pa.string()))
                arrays.append(misfits)
            else:  # a variant the vendor's batch already had: keep both texts
                index = [_normalized(f.name) for f in fields].index(name)
                arrays[index] = pc.coalesce(arrays[index].cast(pa.string()), misfits)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value) if not isinstance(value, int) else value
    if number != int(number):
        raise ValueError(value)
    return int(number)


def _to_instant(value: Any) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(value)  # an epoch's unit is a guess: never guessed
    instant = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    # Vendors document their instants as UTC; a date alone (a HubSpot date property) is its midnight.
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=timezone.utc)  # noqa: UP017 (UTC here is the Arrow type)


_NAMING = snake_case.NamingConvention()


@functools.cache
def _normalized(name: str) -> str:
    return _NAMING.normalize_path(name)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


CONVERT: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "json": _text,
    "bigint": _to_int,
    "double": _to_float,
    "bool": _to_bool,
    "timestamp": _to_instant,
}


def _fit(array: pa.ChunkedArray | pa.Array, data_type: str) -> tuple[pa.Array, pa.Array | None]:
    """(`array` as the declared type, the text of the values that do not fit or None)."""
    target = ARROW[data_type]
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), target), None
    nested = pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind)
    if data_type in ("text", "json") and nested:
        return pa.array([None if v is None else orjson.dumps(v).decode() for v in array.to_pylist()], pa.string()), None
    if data_type in ("text", "json") and pa.types.is_timestamp(kind):
        # Text the connector read as an instant: back to the ISO form the vendor sent.
        return pc.strftime(array, format="%Y-%m-%dT%H:%M:%SZ"), None
    if not nested:
        try:
            return array.cast(target), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    # Value by value: what fits is converted, what does not goes to the variant column.
    convert = CONVERT[data_type]
    fitted, misfits = [], []
    for value in array.to_pylist():
        if value is None:
            fitted.append(None)
            misfits.append(None)
            continue
        try:
            fitted.append(convert(value))
            misfits.append(None)
        except (ValueError, TypeError, OverflowError):
            fitted.append(None)
            misfits.append(_text(value))
    return pa.array(fitted, target), pa.array(misfits, pa.string())


def _classified(where: str, spec: Mapping[str, Any]) -> Classification:
    """The column's classification; a value outside the vocabulary is an error (a missing
    classification is not: privacy/classification.py reports it with the warehouse's columns)."""
    classification = Classification.of(spec)
    wrong = [p for p in classification.problems() if p != "no classification"]
    if wrong:
        raise ValueError(f"{where}: {'; '.join(wrong)}")
    return classification


@functools.cache
def contract(source: str) -> dict[str, TableContract]:
    """Every table's contract of one source, read from its YAML file."""
    path = FOLDER / f"{source}.yml"
    doc = yaml.safe_load(path.read_text())
    tables = {}
    for name, spec in (doc.get("tables") or {}).items():
        columns = {}
        for column, c in (spec.get("columns") or {}).items():
            if c["type"] not in ARROW:
                raise ValueError(
                    f"{path.name}: {name}.{column} has unknown type {c['type']!r}; use one of {sorted(ARROW)}"
                )
            columns[column] = Column(
                column,
                c["type"],
                c.get("description", ""),
                bool(c.get("required", False)),
                _classified(f"{path.name}: {name}.{column}", c),
            )
        others = {}
        for column, c in (spec.get("other_columns") or {}).items():
            where = f"{path.name}: {name}.other_columns.{column}"
            others[column] = _classified(where, c)
            # Erasure finds a table's personal columns by name, without reading the table.
            if others[column].personal_data and any(ch in column for ch in "*?["):
                raise ValueError(f"{where}: a column of personal data is named, not matched by a pattern")
        tables[name] = TableContract(
            source, name, spec.get("description", ""), spec.get("reference", doc.get("reference", "")), columns, others
        )
    return tables


def sources() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yml"))


def table(source: str, name: str) -> TableContract | None:
    return contract(source).get(name)


def conform(source: str, name: str, batch: pa.Table) -> pa.Table:
    """`batch` conformed to its table's contract (as it is if the table has none)."""
    declared = table(source, name)
    return declared.conform(batch) if declared is not None else batch


def dlt_columns(source: str, name: str) -> list[dict]:
    """The contract as dlt column hints (for resources that hand dlt SQL or dicts, not Arrow)."""
    declared = table(source, name)
    return [{"name": c.name, "data_type": c.data_type} for c in declared.columns.values()] if declared else []


# Columns dlt adds to every raw table (see [normalize.parquet_normalizer] in .dlt/config.toml).
DLT_COLUMNS = {"_dlt_load_id": "text"}
# dlt's own columns (its prefix: _dlt_load_id, and the _dlt_id, _dlt_parent_id, ... other
# settings add) and its bookkeeping tables in every raw schema (loads, schema versions,
# pipeline state) say how data was loaded, never what a vendor sent.
DLT_PREFIX = "_dlt_"
DLT_CLASSIFICATION = Classification("internal")
# The quarantine table every raw schema may hold (connectors/quarantine.py): a rejected record
# is kept whole as text, whatever personal data it carries.
QUARANTINE_CLASSIFICATION = {
    "id": Classification("internal"),
    "source": Classification("internal"),
    "resource": Classification("internal"),
    "location": Classification("internal"),
    "reason": Classification("internal"),
    "raw_record": Classification("restricted", "free_text"),
    "quarantined_at": Classification("internal"),
}


def classification(source: str, name: str, column: str) -> Classification | None:
    """A column of one of the source's raw tables as classified here (its contract, dlt's
    columns and tables, the quarantine table); None when nothing classifies it."""
    if name.startswith(DLT_PREFIX) or column.startswith(DLT_PREFIX):
        return DLT_CLASSIFICATION
    if name == quarantine.TABLE:
        return QUARANTINE_CLASSIFICATION.get(column)
    declared = table(source, name)
    return declared.classification(column) if declared is not None else None


def empty_tables(source: str) -> Iterator[tuple[str, str]]:
    """(table, CREATE TABLE column list) for every declared table: the raw schema of a source
    that has sent nothing but what its contract promises (and dlt's own columns)."""
    for name, declared in contract(source).items():
        columns = {c.name: c.data_type for c in declared.columns.values()} | DLT_COLUMNS
        yield name, ", ".join(f'"{column}" {SQL[kind]}' for column, kind in columns.items())
