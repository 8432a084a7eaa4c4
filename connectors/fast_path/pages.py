"""API pages as Arrow tables: dlt's fast path for the API connectors.

dlt normalises Python dicts row by row (a few thousand rows a second); Arrow tables go to
parquet and into DuckDB as they are, two orders of magnitude faster. So each connector gathers
pages into batches, and `RecordReader` turns a batch into one Arrow table: pyarrow's JSON
parser reads the page bodies themselves, several times faster than building Arrow from the
parsed dicts (which remain the way for records a connector assembled itself). The table is
then shaped the way dlt's own normaliser would have shaped the dicts:

- nested objects become `parent__child` columns down to the source's nesting depth; deeper
  objects, and lists that are not child tables, become JSON text;
- a list a connector names becomes a child table of its own, keyed by the parent's id (and the
  position in the list where its items have no id of their own);
- text that reads as an ISO 8601 instant becomes a UTC timestamp (dlt's timestamp detection);
- a field that is null on every record of a batch is left out, as dlt leaves out a column it
  has seen no value for; it appears with the first value;
- a field whose values mix types within a batch (a number here, text there) is kept as text.

Child tables have the primary key (parent's key, `position`) and merge on the parent's key
(`merge_key`): a parent loaded again replaces all its child rows, as dlt does for its own
nested tables. A parent whose list became empty leaves an
empty-list marker (`_empty_list = true`) that deletes its old rows and is itself never
stored.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from queue import Full, Queue
from typing import Any, TypeVar

import dlt
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from connectors import contract
from connectors.http import Page

# dlt detects ISO 8601 instants in text and types the column as a timestamp.
ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
UTC = pa.timestamp("us", tz="UTC")
# The hard-delete flag of a child table's empty-list markers.
EMPTY_MARKER = "_empty_list"


T = TypeVar("T")


class Chunk:
    """The records of one page, kept as the page's body (`key`: the field listing them) and
    parsed again only if needed, or records a connector assembled itself.

    Holding a batch of pages as parsed dicts would cost more than parsing them: Python's
    garbage collector walks every live container each time it runs.
    """

    __slots__ = ("body", "key", "count", "_records")

    def __init__(
        self,
        records: list[dict] | None = None,
        body: bytes | None = None,
        key: str | None = None,
        count: int | None = None,
    ):
        self.body, self.key, self._records = body, key, records
        self.count = len(records) if records is not None else count or 0

    @classmethod
    def of(cls, page: Page, key: str) -> Chunk:
        return cls(body=page.body, key=key, count=len(page.json.get(key) or []))

    @property
    def records(self) -> list[dict]:
        if self._records is None:
            return orjson.loads(self.body).get(self.key) or []
        return self._records


def batches(chunks: Iterable[Chunk], size: int) -> Iterator[list[Chunk]]:
    """Chunks gathered into batches of at least `size` records (the last one smaller)."""
    batch: list[Chunk] = []
    count = 0
    for chunk in chunks:
        batch.append(chunk)
        count += chunk.count
        if count >= size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def read_ahead(items: Iterable[T], ahead: int = 2) -> Iterator[T]:
    """`items` (batches of pages, say), fetched by a thread of their own up to `ahead` items in
    advance.

    While a batch becomes Arrow and goes to disk, the next pages are on their way: libcurl
    waits for the vendor, and pyarrow parses and writes, without holding the GIL. The
    resources themselves are `parallelized` (dlt asks each for its next batch in a worker
    thread), so every resource's fetcher starts at once instead of when dlt first turns to it.
    An error in the fetching thread is raised here, where the items are used.
    """
    queue: Queue = Queue(maxsize=ahead)
    done = object()
    stop = threading.Event()

    def fetch() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put(item, timeout=0.2)
                        break
                    except Full:
                        continue
                else:
                    return
            queue.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put(exc)

    thread = threading.Thread(target=fetch, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def records_of(batch: Sequence[Chunk]) -> list[dict]:
    return [r for chunk in batch for r in chunk.records]


def split_missing(table: pa.Table, batch: Sequence[Chunk], fields: Sequence[str]) -> tuple[pa.Table, list[dict]]:
    """(rows having every field, the raw records of those lacking one: null or empty text)."""
    lacks = None
    for name in fields:
        if name not in table.column_names:
            lacks = pa.array(np.ones(len(table), bool))
            break
        column = table[name]
        empty = pc.is_null(column)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            empty = pc.or_(empty, pc.fill_null(pc.equal(column, ""), False))
        lacks = empty if lacks is None else pc.or_(lacks, empty)
    if lacks is None or not pc.any(lacks).as_py():
        return table, []
    records = records_of(batch)
    bad = [records[i] for i in np.flatnonzero(lacks.to_numpy(zero_copy_only=False))]
    return table.filter(pc.invert(lacks)), bad


# --- page bodies → Arrow ---------------------------------------------------------------------

TEXT = "text"  # a node of `RecordReader`'s text declarations: the field is text


def _declared(node: Any) -> pa.DataType:
    if node == TEXT:
        return pa.string()
    if isinstance(node, list):
        return pa.list_(_declared(node[0]))
    return pa.struct([pa.field(name, _declared(child)) for name, child in node.items()])


def _timestamps(kind: pa.DataType) -> Any:
    """Where the parser typed text as a timestamp inside `kind`, as a declarations node (None:
    nowhere)."""
    if pa.types.is_timestamp(kind):
        return TEXT
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        item = _timestamps(kind.value_type)
        return None if item is None else [item]
    if pa.types.is_struct(kind):
        found = {f.name: node for f in kind if (node := _timestamps(f.type)) is not None}
        return found or None
    return None


def _merge(into: dict, found: dict) -> bool:
    """Add the declarations `found` to `into`; True if any was new."""
    new = False
    for name, node in found.items():
        have = into.get(name)
        if isinstance(node, dict) and isinstance(have, dict):
            new |= _merge(have, node)
        elif (
            isinstance(node, list)
            and isinstance(node[0], dict)
            and isinstance(have, list)
            and isinstance(have[0], dict)
        ):
            new |= _merge(have[0], node[0])
        elif have != node:
            into[name], new = node, True
    return new


class RecordReader:
    """Batches of one resource's pages as Arrow tables of their records (`key`: the field of
    the page body that lists them).

    pyarrow's parser would turn text that looks like a date into a naive timestamp, unlike
    dlt's detection (instants only, with their zone): every field it typed so is declared text
    and the batch read again, so text stays text and `shape` types instants as dlt would. The
    declarations are kept for the resource's later batches. Bodies the parser cannot take (a
    field that is a number here and text there, say) are read from their dicts instead.
    """

    def __init__(self, key: str):
        self.key = key
        self.text: dict = {}

    def read(self, batch: Sequence[Chunk]) -> pa.Table:
        count = sum(chunk.count for chunk in batch)
        if not count:
            return pa.table({})
        if any(chunk.body is None for chunk in batch):
            return from_records(records_of(batch))
        try:
            table = self._parse([chunk.body for chunk in batch])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError):
            return from_records(records_of(batch))
        if len(table) != count:  # the bodies hold something the parsed pages did not
            return from_records(records_of(batch))
        return table

    def _parse(self, bodies: list[bytes]) -> pa.Table:
        # One body per line: a newline in JSON is whitespace between tokens (never inside text).
        lines = b"\n".join(
            b.replace(b"\n", b" ").replace(b"\r", b" ") if b"\n" in b or b"\r" in b else b for b in bodies
        )
        block = max(1 << 20, max(map(len, bodies)) + 1)
        for _ in range(4):
            options = pa_json.ParseOptions(
                explicit_schema=pa.schema(_declared(self.text)) if self.text else None,
                unexpected_field_behavior="infer",
            )
            pages = pa_json.read_json(
                io.BytesIO(lines), read_options=pa_json.ReadOptions(block_size=block), parse_options=options
            )
            if not _merge(self.text, _timestamps(pa.struct(list(pages.schema))) or {}):
                break
        listed = pages[self.key]
        if not (pa.types.is_list(listed.type) or pa.types.is_large_list(listed.type)):
            raise KeyError(self.key)
        items = pc.list_flatten(listed)
        if pa.types.is_null(items.type):
            return pa.table({})
        return pa.Table.from_struct_array(items)


# --- records → Arrow -------------------------------------------------------------------------


def _tolerant_array(values: list) -> pa.Array:
    """`values` as Arrow, however they mix types: objects and lists keep their structure, and
    only a field whose own values mix types (a Zendesk custom field that holds text on one
    ticket and a list on the next) becomes text, JSON for what is not text already."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    present = [v for v in values if v is not None]
    missing = pa.array([v is None for v in values])
    if present and all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        fields = [_tolerant_array([None if v is None else v.get(k) for v in values]) for k in keys]
        return pa.StructArray.from_arrays(fields, names=keys, mask=missing)
    if present and all(isinstance(v, list) for v in present):
        offsets = np.cumsum([0] + [0 if v is None else len(v) for v in values])
        inner = _tolerant_array([x for v in present for x in v])
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=missing)
    return pa.array([v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values], pa.string())


def _tolerant(records: list[dict]) -> pa.Table:
    """A table from records whose fields may mix types (see `_tolerant_array`)."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    return pa.table({key: _tolerant_array([r.get(key) for r in records]) for key in keys})


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
    return [
        pa.chunked_array([fields[i] for fields in per_chunk], type=field.type) for i, field in enumerate(array.type)
    ]


def _columns(
    name: str,
    array: pa.ChunkedArray,
    depth: int,
    levels: int,
    keep: set[str],
    out: dict,
    whole: frozenset[str] = frozenset(),
) -> None:
    kind = array.type
    if name in keep:
        out[name] = array
    elif pa.types.is_null(kind) or array.null_count == len(array):
        return
    elif name in whole and (pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_map(kind)):
        out[name] = _json_text(array)
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


def shape(table: pa.Table, levels: int, keep: Sequence[str] = (), whole: Sequence[str] = ()) -> pa.Table:
    """Flatten objects into `a__b` columns `levels` deep; `keep` columns stay as they are,
    `whole` top-level objects become one JSON text column (free-form maps such as metadata,
    whose keys are the account's own)."""
    out: dict[str, pa.ChunkedArray] = {}
    for name, array in zip(table.column_names, table.columns):
        _columns(name, array, 1, levels, set(keep), out, frozenset(whole))
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


def to_table(
    records: pa.Table, levels: int, keep: Sequence[str] = (), keys: Sequence[str] = ("id",), whole: Sequence[str] = ()
) -> pa.Table:
    """Records (see `RecordReader`) as one Arrow table shaped like dlt's normaliser would (see
    the module doc)."""
    return required(shape(records, levels, keep, whole), keys)


def children(
    lists: pa.ChunkedArray,
    parent_ids: pa.ChunkedArray,
    parent_key: str,
    levels: int,
    inherit: dict[str, pa.ChunkedArray] | None = None,
    markers: bool = True,
) -> pa.Table:
    """The items of a list column as rows of their own, keyed by their parent's id and their
    `position` in its list.

    Objects become columns (`levels` deep), other values a `value` column; `inherit` names
    parent columns whose values fill the items' own column where it is null. A parent whose
    list is empty gets one empty-list marker row (position -1) unless `markers` is false (a
    full listing, which replaces the table: there is nothing to delete).
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
    # The parent's id is the key, whatever the items say themselves (a Stripe subscription
    # item names its `subscription` too, and only some vendors' items do).
    columns = {
        name: array for name, array in zip(items.column_names, items.columns) if name not in (parent_key, "position")
    }
    columns = {
        parent_key: pc.take(parent_ids, parents),
        "position": pa.array(np.arange(len(values)) - np.repeat(starts, lengths), pa.int64()),
        **columns,
    }
    for name, values_of_parent in (inherit or {}).items():
        from_parent = pc.take(values_of_parent, parents)
        if name in columns:
            columns[name] = pc.coalesce(columns[name], from_parent)
        elif from_parent.null_count < len(from_parent):
            columns[name] = from_parent
    keys = [parent_key, "position"]
    rows = required(pa.table(columns), keys)
    if not len(empty) or not markers:
        return rows
    # A marker carries only the parent's key: merging on it deletes the parent's old items, and
    # the hard-delete flag keeps the marker itself out of the table.
    markers = pa.table(
        {
            parent_key: pc.take(parent_ids, pa.array(empty)),
            "position": pa.array(np.full(len(empty), -1), pa.int64()),
            EMPTY_MARKER: pa.array([True] * len(empty)),
        }
    )
    return required(pa.concat_tables([rows, markers], promote_options="default"), keys)


def child_hints(table: str, parent_key: str, replacing: bool = False) -> dict:
    """Hints for a child table: merged per parent, so a reloaded parent replaces its items;
    or, in a run that replaces the tables, replaced, without the empty-list markers' column
    (nothing in a replaced table needs deleting)."""
    keys = {"table_name": table, "primary_key": [parent_key, "position"]}
    if replacing:
        return dlt.mark.make_hints(write_disposition="replace", **keys)
    return dlt.mark.make_hints(
        write_disposition="merge",
        merge_key=parent_key,
        columns=[{"name": EMPTY_MARKER, "data_type": "bool", "hard_delete": True}],
        **keys,
    )


class Listing:
    """How one run's batches of a resource go to dlt: replacing the table or merging into it.

    A run that reads everything (the first, or one whose state was lost) replaces the table:
    the listing holds whatever the table could, and DuckDB copies the rows in at a fraction of
    a merge's cost (no staging table, no dedup). A listing that returns some record twice (a
    redelivered page, a record updated while an export ran) switches the run to merge from
    that batch on: the resource's last hints are the ones dlt applies to the whole load, so
    every row is merged and one row per key is kept (the one with the largest `newest`, a
    resource's update instant, if it has one). An incremental run always merges.
    """

    def __init__(self, name: str, full: bool, key: str = "id", newest: str | None = None, source: str | None = None):
        self.name = name
        self.replacing = full
        self.key = key
        self._seen: set = set()
        self.newest = newest
        # Batches are conformed to the source's raw contract (see `connectors.contract`).
        self.source = source
        self.written: set[str] = set()

    def _conform(self, name: str, table: pa.Table) -> pa.Table:
        self.written.add(name)
        return contract.conform(self.source, name, table) if self.source else table

    def check(self, table: pa.Table) -> None:
        """Note the keys of a batch about to be yielded; a key seen before ends the replacing."""
        if not self.replacing:
            return
        keys = table[self.key].to_pylist()
        before = len(self._seen)
        self._seen.update(keys)
        if len(self._seen) - before != len(keys):
            self.replacing, self._seen = False, set()

    def table(self, table: pa.Table):
        """A resource's own table."""
        # Fresh hints every time: dlt merges into the hints it is given, so a shared dict
        # would carry one resource's columns into another's tables. Only a merge has rows to
        # choose between: the dedup hint goes with the merge alone.
        # The resource's own table is given as a table variant too: hints on the resource
        # itself would reach its child tables as well.
        table = self._conform(self.name, table)
        keys = {"table_name": self.name, "primary_key": self.key}
        if self.replacing:
            return dlt.mark.with_hints(
                table, dlt.mark.make_hints(write_disposition="replace", **keys), create_table_variant=True
            )
        columns = [{"name": self.newest, "dedup_sort": "desc"}] if self.newest else []
        return dlt.mark.with_hints(
            table, dlt.mark.make_hints(write_disposition="merge", columns=columns, **keys), create_table_variant=True
        )

    def child(self, rows: pa.Table, table: str, parent_key: str):
        """The rows of a child table (see `children`, `child_hints`)."""
        rows = self._conform(table, rows)
        return dlt.mark.with_hints(rows, child_hints(table, parent_key, self.replacing), create_table_variant=True)

    def related(self, rows: pa.Table, table: str, key: str = "id"):
        """Rows of another table this resource fills (objects it finds embedded in its own),
        always merged on `key`: several resources may fill it, and none of them lists it whole."""
        rows = self._conform(table, rows)
        return dlt.mark.with_hints(
            rows,
            dlt.mark.make_hints(table_name=table, write_disposition="merge", primary_key=key),
            create_table_variant=True,
        )

    def missing(self, children: dict[str, str] | None = None, related: dict[str, str] | None = None) -> Iterator:
        """Empty batches, conformed to the contract, for the tables this run wrote nothing to:
        after a full listing they replace what the table held (the vendor has none of them
        now), and a table the warehouse does not have yet, or not with every declared column,
        gets them, so staging always finds every declared table and column. `children` and
        `related` map table names to their parent key / key."""
        if not self.source:
            return
        known = dlt.current.source_schema().tables
        todo = [
            (self.name, "own", self.key),
            *(((t, "child", k) for t, k in (children or {}).items())),
            *(((t, "related", k) for t, k in (related or {}).items())),
        ]
        for name, kind, key in todo:
            declared = contract.table(self.source, name)
            if name in self.written or declared is None:
                continue
            columns = (known.get(name) or {}).get("columns") or {}
            complete = all(c in columns for c in declared.columns)
            # An incremental run leaves a complete table alone; a table without some declared
            # column (created by an older contract) gets it from an empty batch.
            if not (self.replacing and kind != "related") and complete:
                continue
            empty = required(declared.empty(), [key, "position"] if kind == "child" else [key])
            if kind == "own":
                yield self.table(empty)
            elif kind == "child":
                yield self.child(empty, name, key)
            else:
                yield self.related(empty, name, key)


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
