"""API pages as Arrow tables: dlt's fast path for the API connectors.

dlt normalises Python dicts row by row (a few thousand rows a second); Arrow tables go to
parquet and into DuckDB as they are, two orders of magnitude faster. So each connector parses
a page with orjson, builds one Arrow table per batch of pages and shapes it the way dlt's own
normaliser would have shaped the dicts:

- nested objects become `parent__child` columns down to the source's nesting depth; deeper
  objects, and lists that are not child tables, become JSON text;
- a list a connector names becomes a child table of its own, keyed by the parent's id (and the
  position in the list where its items have no id of their own);
- text that reads as an ISO 8601 instant becomes a UTC timestamp (dlt's timestamp detection);
- a field that is null on every record of a batch is left out, as dlt leaves out a column it
  has seen no value for; it appears with the first value;
- a field whose values mix types within a batch (a number here, text there) is kept as text.

Child tables have the primary key (parent's key, `position`) and merge on the parent's key (`merge_key`): a parent loaded again replaces all its
child rows, as dlt does for its own nested tables. A parent whose list became empty leaves an
empty-list marker (`_empty_list = true`) that deletes its old rows and is itself never
stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import dlt
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import requests

# dlt detects ISO 8601 instants in text and types the column as a timestamp.
ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
UTC = pa.timestamp("us", tz="UTC")
# The hard-delete flag of a child table's empty-list markers.
EMPTY_MARKER = "_empty_list"


def get_json(session: requests.Session, url: str, params: dict | None = None, body: Any = None) -> dict:
    """One page, parsed with orjson; HTTP errors raise (after the session's retries)."""
    if body is None:
        response = session.get(url, params=params)
    else:
        response = session.post(url, params=params, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    response.raise_for_status()
    return orjson.loads(response.content)


def without(records: list[dict], *fields: str) -> tuple[list[dict], list[dict]]:
    """(records having every field, records lacking one), keeping the common case cheap."""
    def lacks(r: dict) -> bool:
        return any(r.get(f) in (None, "") for f in fields)

    if not any(map(lacks, records)):
        return records, []
    return [r for r in records if not lacks(r)], [r for r in records if lacks(r)]


# --- records → Arrow -------------------------------------------------------------------------

def _tolerant(records: list[dict]) -> pa.Table:
    """A table from records whose fields may mix types: such a field is kept as text."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    columns = {}
    for key in keys:
        values = [r.get(key) for r in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[key] = pa.array([v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values],
                                    pa.string())
    return pa.table(columns)


def _json_text(array: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in array.to_pylist()], pa.string())


def _maybe_instant(array: pa.ChunkedArray) -> pa.ChunkedArray:
    first = pc.drop_null(array)
    if len(first) == 0 or not ISO_INSTANT.match(first[0].as_py()):
        return array
    try:
        return array.cast(UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return array


def struct_fields(array: pa.ChunkedArray) -> list[pa.ChunkedArray]:
    # `flatten` applies the struct's own nulls to its fields.
    per_chunk = [chunk.flatten() for chunk in array.chunks]
    return [pa.chunked_array([fields[i] for fields in per_chunk], type=field.type)
            for i, field in enumerate(array.type)]


def _columns(name: str, array: pa.ChunkedArray, depth: int, levels: int, keep: set[str], out: dict) -> None:
    kind = array.type
    if name in keep:
        out[name] = array
    elif pa.types.is_null(kind):
        return
    elif pa.types.is_struct(kind):
        if depth <= levels:
            for field, child in zip(kind, struct_fields(array)):
                _columns(f"{name}__{field.name}", child, depth + 1, levels, keep, out)
        else:
            out[name] = _json_text(array)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        out[name] = _json_text(array)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        out[name] = _maybe_instant(array)
    else:
        out[name] = array


def shape(table: pa.Table, levels: int, keep: Sequence[str] = ()) -> pa.Table:
    """Flatten objects into `a__b` columns `levels` deep; `keep` columns stay as they are."""
    out: dict[str, pa.ChunkedArray] = {}
    for name, array in zip(table.column_names, table.columns):
        _columns(name, array, 1, levels, set(keep), out)
    return pa.table(out)


def required(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """Declare key columns not nullable, as the resource's key hints already say."""
    fields = [f.with_nullable(False) if f.name in names else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def from_records(records: list[dict]) -> pa.Table:
    """Records as they are, one column per field (mixed-type fields as text)."""
    try:
        first = records[0].keys() if records else ()
        if all(r.keys() == first for r in records):
            return pa.Table.from_pylist(records)
        # `from_pylist` takes its columns from the first record; a struct array has them all.
        return pa.Table.from_struct_array(pa.array(records))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _tolerant(records)


def to_table(records: list[dict], levels: int, keep: Sequence[str] = (), keys: Sequence[str] = ("id",)) -> pa.Table:
    """Records as one Arrow table shaped like dlt's normaliser would (see the module doc)."""
    return required(shape(from_records(records), levels, keep), keys)


def children(lists: pa.ChunkedArray, parent_ids: pa.ChunkedArray, parent_key: str, levels: int) -> pa.Table:
    """The items of a list column as rows of their own, keyed by their parent's id and their
    `position` in its list.

    Objects become columns (`levels` deep), other values a `value` column. A parent whose list
    is empty gets one empty-list marker row (position -1).
    """
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    parent_ids = parent_ids.combine_chunks() if isinstance(parent_ids, pa.ChunkedArray) else parent_ids
    if pa.types.is_null(lists.type):
        lists = pa.array([[]] * len(lists), pa.list_(pa.null()))
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    empty = np.flatnonzero(lengths == 0)

    if pa.types.is_struct(values.type):
        items = shape(pa.Table.from_arrays(values.flatten(), names=[f.name for f in values.type]), levels)
    elif pa.types.is_null(values.type):
        items = pa.table({})
    else:
        items = shape(pa.table({"value": values}), levels)
    starts = np.cumsum(lengths) - lengths
    columns = {
        parent_key: pc.take(parent_ids, parents),
        "position": pa.array(np.arange(len(values)) - np.repeat(starts, lengths), pa.int64()),
    }
    columns |= dict(zip(items.column_names, items.columns))
    keys = [parent_key, "position"]
    rows = required(pa.table(columns), keys)
    if not len(empty):
        return rows
    # A marker carries only the parent's key: merging on it deletes the parent's old items, and
    # the hard-delete flag keeps the marker itself out of the table.
    markers = pa.table({
        parent_key: pc.take(parent_ids, pa.array(empty)),
        "position": pa.array(np.full(len(empty), -1), pa.int64()),
        EMPTY_MARKER: pa.array([True] * len(empty)),
    })
    return required(pa.concat_tables([rows, markers], promote_options="default"), keys)


def child_hints(table: str, parent_key: str, columns: Iterable[dict] = ()) -> dict:
    """Hints for a child table: merged per parent, so a reloaded parent replaces its items."""
    return dlt.mark.make_hints(
        table_name=table,
        write_disposition="merge",
        primary_key=[parent_key, "position"],
        merge_key=parent_key,
        columns=[{"name": EMPTY_MARKER, "data_type": "bool", "hard_delete": True}, *columns],
    )


def mark_child(rows: pa.Table, hints: dict):
    return dlt.mark.with_hints(rows, hints, create_table_variant=True)


class Cursor:
    """An incremental cursor at an instant, plus the ids loaded at that very instant.

    A vendor asked for what changed "at or after" the cursor returns the records of that
    instant again; their ids are kept in the resource state to skip them. `state_key` names
    the instant in the state, in whatever unit the connector asks the vendor in.
    """

    def __init__(self, state: dict, state_key: str, drop_older: bool = False):
        self.state, self.state_key, self.drop_older = state, state_key, drop_older
        self.start = state.get(state_key, 0)
        self.seen = set(state.get("seen_ids", []))
        self.newest, self.newest_ids = self.start, set(self.seen)

    def fresh(self, table: pa.Table, instants: pa.Array) -> pa.Table:
        """`table` without the rows loaded before (`instants`: each row's instant, null kept);
        notes the newest instant read."""
        old = pc.less(instants, self.start) if self.drop_older else None
        if self.seen:
            again = pc.and_(pc.equal(instants, self.start), pc.is_in(table["id"], pa.array(list(self.seen))))
            old = again if old is None else pc.or_(old, again)
        if old is not None:
            keep = pc.invert(pc.fill_null(old, False))
            table, instants = table.filter(keep), instants.filter(keep)
        newest = pc.max(instants).as_py() if len(table) else None
        if newest is not None:
            at_newest = table["id"].filter(pc.equal(instants, newest)).to_pylist()
            if newest > self.newest:
                self.newest, self.newest_ids = newest, set(at_newest)
            elif newest == self.newest:
                self.newest_ids.update(at_newest)
        return table

    def save(self) -> None:
        self.state[self.state_key], self.state["seen_ids"] = self.newest, sorted(self.newest_ids)
