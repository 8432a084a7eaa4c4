"""Product usage events from the event collector's landing folder.

Files      `*.jsonl.gz` (one track call per line) dropped into `sources.usage_events.landing_dir`;
           nested `properties` land as a JSON column.
Increment  a file is read once: the names of loaded files are kept in dlt's resource state,
           which is committed with the data, so a crash never skips or double-reads a file.
Speed      DuckDB reads the files itself, inside the warehouse: the resource hands dlt a SQL
           model (`read_json` over the new files) and dlt's load step runs it as one
           `INSERT ... SELECT`, so events never pass through Python. Every value is read as
           text and cast in SQL, so a value that does not fit its column is seen, not nulled.
Write      append, skipping every event whose `message_id` is already loaded: the same event
           delivered twice (a re-sent file, a rerun after a crash) is stored once. A file
           re-sent under a second name in the same batch is recognised by its content and
           skipped.
Contract   `message_id`, `event` and `timestamp` are required and `timestamp`/`received_at`
           must be ISO 8601. A number where text is expected is kept as its text (lossless).
           A line that is not JSON or breaks these rules is flagged `_rejected` by the SQL;
           `settle` then re-reads just the files with such lines in Python, moves each bad
           line to `raw_usage.quarantine` with the file, line and reason, loads what Python
           can load, and deletes the flagged rows. Other columns evolve: a new top-level key
           becomes a column typed from its values. Keys are looked for in the first
           `SAMPLE_LINES` lines of each new file: a key that first appears deeper in a file is
           not read until a later file has it near the top (the collector's event details go
           in `properties`, which is kept whole);
           a value that cannot be cast to its column's loaded type goes, through `settle`, to
           a variant column `<name>__v_<type>`, as dlt does for JSON sources, so one odd file
           never blocks the loads behind it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from itertools import islice
from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from dlt.common.destination.client import SqlModel
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

from connectors import quarantine

PATTERN = "*.jsonl.gz"
TABLE = "events"
REQUIRED = ("message_id", "event", "timestamp")
# Columns whose types the collector guarantees; anything else it adds is kept as it comes.
TYPES = {
    "message_id": pa.string(),
    "type": pa.string(),
    "event": pa.string(),
    "user_id": pa.string(),
    "account_id": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "received_at": pa.timestamp("us", tz="UTC"),
}
# Lines per new file read in Python to find top-level keys the warehouse has no column for.
SAMPLE_LINES = 100
# Columns the loader adds: never keys of an event.
OWN_COLUMNS = {"_file_name", "_rejected"}

# dlt type -> (type DuckDB reads the value as, SQL type it is cast to, or None if read as is)
READ_AS = {
    "text": ("VARCHAR", None),
    "timestamp": ("VARCHAR", "TIMESTAMPTZ"),
    "bigint": ("VARCHAR", "BIGINT"),
    "double": ("VARCHAR", "DOUBLE"),
    "bool": ("VARCHAR", "BOOLEAN"),
    "json": ("JSON", None),
}


class BadFile(ValueError):
    """The fast path met something it cannot load as is; read the file line by line."""


def _column(name: str, data_type: str, **hints) -> dict:
    return {"name": name, "data_type": data_type, **hints}


CORE_COLUMNS = [
    _column("message_id", "text", nullable=True),
    _column("type", "text"),
    _column("event", "text"),
    _column("user_id", "text"),
    _column("account_id", "text"),
    _column("timestamp", "timestamp"),
    _column("received_at", "timestamp"),
    _column("properties", "json"),
    _column("_file_name", "text"),
    _column("_rejected", "bool"),
]


CORE_NAMES = frozenset(c["name"] for c in CORE_COLUMNS)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _json_type(value) -> str:
    """The dlt type of a JSON value, as dlt would infer it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (dict, list)):
        return "json"
    return "text"


def sample_keys(paths: Iterable[Path], lines: int = SAMPLE_LINES) -> dict[str, str]:
    """Top-level keys in the first `lines` lines of each file, with the type of their first value."""
    keys: dict[str, str] = {}
    for path in paths:
        try:
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                for line in islice(f, lines):
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # the SQL flags it and `settle` quarantines it
                    if isinstance(record, dict):
                        for key, value in record.items():
                            if value is not None and key not in keys:
                                keys[key] = _json_type(value)
        except (OSError, EOFError) as exc:
            raise BadFile(f"{path.name}: cannot be read: {exc}") from exc
    return keys


def distinct_content(paths: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """The files to read, and {re-sent file: the file with the same bytes} to skip.

    Only files of equal size are hashed, so a normal batch costs nothing here."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    for path in paths:
        by_size[path.stat().st_size].append(path)
    keep: list[Path] = []
    same: dict[str, str] = {}
    for group in by_size.values():
        seen: dict[str, Path] = {}
        for path in group:
            digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest() if len(group) > 1 else ""
            if digest and digest in seen:
                same[path.name] = seen[digest].name
            else:
                seen[digest] = path
                keep.append(path)
    return sorted(keep), same


def native_query(paths: list[Path], columns: dict[str, dict], keys: dict[str, str], dedup_table: str | None) -> str:
    """The SELECT that reads `paths` in DuckDB: typed columns, `_file_name`, `_rejected`.

    `columns` are the table's columns by name, `keys` the JSON key each is read from.
    """
    read_types, selects, problems = {}, [], []
    for name, key in keys.items():
        read_type, cast = READ_AS.get(columns[name]["data_type"], ("VARCHAR", None))
        read_types[key] = read_type
        raw = f"src.{_ident(key)}"
        if cast:
            selects.append(f"TRY_CAST({raw} AS {cast}) AS {_ident(name)}")
            problems.append(f"({raw} IS NOT NULL AND TRY_CAST({raw} AS {cast}) IS NULL)")
        else:
            selects.append(f"{raw} AS {_ident(name)}")
    for name in REQUIRED:
        raw = f"src.{_ident(keys[name])}"
        problems.append(f"{raw} IS NULL OR {raw} = ''")
    struct = "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(t)}" for k, t in read_types.items()) + "}"
    files = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
    source = (f"read_json({files}, format = 'newline_delimited', columns = {struct}, "
              f"ignore_errors = true, filename = '__path')")
    sql = (f"SELECT {', '.join(selects)}, parse_filename(src.__path) AS _file_name, "
           f"({' OR '.join(problems)}) AS _rejected FROM {source} AS src")
    if dedup_table:
        key = _ident(keys["message_id"])
        sql += (f" WHERE NOT EXISTS (SELECT 1 FROM {dedup_table} AS loaded "
                f"WHERE loaded.message_id = src.{key} AND loaded._rejected IS NOT TRUE)")
    return sql



def _typed(table: pa.Table) -> pa.Table:
    for name, type_ in TYPES.items():
        if name in table.column_names:
            have = table.schema.field(name).type
            # Only text (or what pyarrow already parsed from text) converts faithfully: a
            # number would silently become an epoch or a stringified id.
            if not (pa.types.is_string(have) or pa.types.is_null(have) or pa.types.is_timestamp(have)):
                raise BadFile(f"{name} is {have}")
            try:
                column = table.column(name).cast(type_)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise BadFile(f"{name}: {exc}") from exc
            table = table.set_column(table.column_names.index(name), name, column)
    for name in REQUIRED:
        if name not in table.column_names or table.column(name).null_count:
            raise BadFile(f"{name} missing")
    return table


# Arrow types for the dlt types an untyped collector column can take.
ARROW_OF = {"text": pa.string(), "bigint": pa.int64(), "double": pa.float64(), "bool": pa.bool_()}


def align(table: pa.Table, loaded: dict[str, dict]) -> pa.Table:
    """Fit untyped columns to the types already loaded (see Contract above)."""
    for index, field in enumerate(table.schema):
        known = loaded.get(field.name, {}).get("data_type")
        if field.name in TYPES or known is None:
            continue
        have = get_column_type_from_py_arrow(field.type)["data_type"]
        if have == known:
            continue
        if known in ARROW_OF:
            try:
                table = table.set_column(index, field.name, table.column(index).cast(ARROW_OF[known]))
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        table = table.rename_columns([*table.column_names[:index], f"{field.name}__v_{have}", *table.column_names[index + 1 :]])
    return table


def _problem(line: str) -> tuple[dict | None, str | None]:
    """The parsed event (numbers in text fields turned to text, as the SQL does), or the
    reason it cannot be loaded."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(record, dict):
        return None, f"not a JSON object but {type(record).__name__}"
    missing = [f for f in REQUIRED if record.get(f) in (None, "")]
    if missing:
        return None, f"missing required field(s): {', '.join(missing)}"
    for name, type_ in TYPES.items():
        value = record.get(name)
        if value is None:
            continue
        if pa.types.is_timestamp(type_):
            try:
                datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                return None, f"{name} is not an ISO 8601 timestamp: {value!r}"
            if not isinstance(value, str):
                return None, f"{name} is not an ISO 8601 timestamp: {value!r}"
        elif not isinstance(value, str):
            record[name] = json.dumps(value, separators=(",", ":"))
    return record, None


def read_file(path: Path) -> tuple[pa.Table | None, list[dict]]:
    """Parse one collector file in Python: (the good events as Arrow, quarantine rows for the bad lines)."""
    try:
        with pa.input_stream(str(path), compression="gzip") as stream:
            table = _typed(pj.read_json(stream))
        bad: list[dict] = []
    except (pa.ArrowInvalid, BadFile):
        good, bad = [], []
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                record, reason = _problem(line)
                if reason:
                    bad.append(quarantine.row("usage_events", TABLE, reason, line.rstrip("\n"), f"{path.name}:{number}"))
                else:
                    good.append(record)
        if not good:
            return None, bad
        buffer = "\n".join(json.dumps(r) for r in good).encode()
        table = _typed(pj.read_json(pa.BufferReader(buffer)))
    table = table.append_column("_file_name", pa.array([path.name] * table.num_rows, pa.string()))
    return table.append_column("_rejected", pa.array([False] * table.num_rows, pa.bool_())), bad


def pending_files(landing_dir: Path, loaded: set[str]) -> list[Path]:
    return sorted(p for p in landing_dir.glob(PATTERN) if p.name not in loaded)


def _existing_table(pipeline: dlt.Pipeline) -> str | None:
    """The qualified name of the loaded events table, if the warehouse has one."""
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return None
        rows = client.execute_sql(
            "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
            client.dataset_name, TABLE,
        )
        return client.make_qualified_table_name(TABLE) if rows else None


def _columns_and_keys(schema_columns: dict[str, dict], state_keys: dict[str, str], sampled: dict[str, str],
                      naming) -> tuple[dict[str, dict], dict[str, str], list[dict]]:
    """Every column the SQL reads, the JSON key each comes from, and the columns new to dlt."""
    columns = {c["name"]: c for c in CORE_COLUMNS}
    columns.update({n: c for n, c in schema_columns.items() if c.get("data_type")})
    keys = {c["name"]: c["name"] for c in CORE_COLUMNS if c["name"] not in OWN_COLUMNS}
    keys.update(state_keys)
    # Columns another path added (a key first met in a re-read file) are read from now on;
    # dlt's own and variant columns are not keys of an event.
    for name in columns:
        if name not in keys and name not in OWN_COLUMNS and not name.startswith("_dlt") and "__v_" not in name:
            keys[name] = name
    new: list[dict] = []
    known_keys = set(keys.values())
    for key, data_type in sampled.items():
        name = naming.normalize_identifier(key)
        if key in known_keys or name in keys or name in OWN_COLUMNS or name.startswith("_dlt"):
            continue
        keys[name] = key
        columns[name] = _column(name, data_type)
        new.append(columns[name])
    return columns, keys, new


@dlt.source(name="usage_events")
def usage_events_source(landing_dir: str = dlt.config.value, recheck: tuple[str, ...] = ()):
    """`recheck` names loaded files to read again in Python (see `settle`)."""
    folder = Path(landing_dir)

    @dlt.resource(name=TABLE, write_disposition="append", columns=CORE_COLUMNS)
    def events():
        if not folder.is_dir():
            raise FileNotFoundError(f"usage_events: landing folder {folder} does not exist")
        state = dlt.current.resource_state()
        state.setdefault("loaded_files", [])
        pipeline = dlt.current.pipeline()
        if recheck:
            yield from _reread(folder, recheck, pipeline)
            return
        pending = pending_files(folder, set(state["loaded_files"]))
        if not pending:
            return
        pending, resent = distinct_content(pending)
        schema = dlt.current.source_schema()
        columns, keys, new = _columns_and_keys(
            schema.tables.get(TABLE, {}).get("columns", {}), state.get("keys", {}), sample_keys(pending), schema.naming
        )
        query = native_query(pending, columns, keys, _existing_table(pipeline))
        model = Path(pipeline.working_dir) / f"usage_events_{uuid.uuid4().hex}.model"
        model.write_text(str(SqlModel.from_query_string(query, dialect="duckdb")))
        try:
            yield dlt.mark.with_file_import(str(model), "model", hints=dlt.mark.make_hints(columns=new) if new else None)
        finally:
            model.unlink(missing_ok=True)
        state["loaded_files"].extend(sorted([p.name for p in pending] + list(resent)))
        state["keys"] = {n: k for n, k in keys.items() if n not in CORE_NAMES}

    return events


def _reread(folder: Path, names: Iterable[str], pipeline: dlt.Pipeline):
    """Read files in Python: the bad lines to quarantine, and the events the SQL could not load."""
    table_name = _existing_table(pipeline)
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"usage_events: {path} was loaded with rejected lines and is needed again to "
                                    "quarantine them; put it back in the landing folder")
        table, bad = read_file(path)
        if table is not None and table_name:
            with pipeline.sql_client() as client:
                ids = table.column("message_id").to_pylist()
                rows = client.execute_sql(f"select message_id from {table_name} where _rejected is not true "
                                          "and list_contains(%s, message_id)", ids)
            loaded = pa.array(sorted({r[0] for r in rows}), pa.string())
            table = table.filter(pc.invert(pc.is_in(table.column("message_id"), loaded)))
        if table is not None and table.num_rows:
            yield align(table, dlt.current.source_schema().tables.get(TABLE, {}).get("columns", {}))
        if bad:
            yield quarantine.mark(bad)


def settle(pipeline: dlt.Pipeline, landing_dir: str | Path):
    """Finish a fast-path load: quarantine and re-load the lines the SQL flagged `_rejected`.

    Safe to repeat and to interrupt: quarantine rows are keyed, events already loaded are
    skipped, and the flagged rows are deleted only after the re-read is committed.
    Returns the re-read's load info, or None when nothing was flagged.
    """
    table_name = _existing_table(pipeline)
    if table_name is None:
        return None
    with pipeline.sql_client() as client:
        files = [r[0] for r in client.execute_sql(f"select distinct _file_name from {table_name} where _rejected")]
    if not files:
        return None
    info = pipeline.run(usage_events_source(landing_dir=str(landing_dir), recheck=tuple(sorted(files))))
    with pipeline.sql_client() as client:
        client.execute_sql(f"delete from {table_name} where _rejected")
    return info
