"""Product usage events from the event collector's landing folder.

Files      `*.jsonl.gz` (one track call per line) dropped into `sources.usage_events.landing_dir`;
           nested `properties` land as a JSON column.
Increment  a file is read once: the names of loaded files are kept in dlt's resource state,
           which is committed with the data, so a crash never skips or double-reads a file.
Write      merge on `message_id`, so the same event delivered twice (a re-sent file) is
           stored once.
Contract   `message_id`, `event` and `timestamp` are required and `timestamp`/`received_at`
           must be ISO 8601; a line that is not JSON or breaks these rules goes to
           `raw_usage.quarantine` with the file, line and reason. Other columns evolve: a new
           one is added; one whose values change type is cast to the loaded type when that is
           lossless, otherwise the new values go to a variant column `<name>__v_<type>`, as dlt
           does for JSON sources, so one odd file never blocks the loads behind it.
Speed      files are parsed by pyarrow and handed to dlt as Arrow tables (dlt's fast path); only
           a file with a bad line is re-read line by line to set that line aside.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.json as pj
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

from connectors import quarantine

PATTERN = "*.jsonl.gz"
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


class BadFile(ValueError):
    """The fast path met something it cannot load as is; read the file line by line."""


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
    # Declared non-null like dlt's primary-key hint, so dlt has no differing hint to warn about.
    key = table.schema.get_field_index("message_id")
    return table.cast(table.schema.set(key, table.schema.field(key).with_nullable(False)))


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
    """The parsed event, or the reason it cannot be loaded."""
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
        elif not isinstance(value, str):
            return None, f"{name} should be a string, got {type(value).__name__}: {value!r}"
    return record, None


def read_file(path: Path) -> tuple[pa.Table | None, list[dict]]:
    """Parse one collector file: (the good events as Arrow, quarantine rows for the bad lines)."""
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
                    bad.append(quarantine.row("usage_events", "events", reason, line.rstrip("\n"), f"{path.name}:{number}"))
                else:
                    good.append(record)
        if not good:
            return None, bad
        buffer = "\n".join(json.dumps(r) for r in good).encode()
        table = _typed(pj.read_json(pa.BufferReader(buffer)))
    column = pa.array([path.name] * table.num_rows, pa.string())
    return table.append_column("_file_name", column), bad


def pending_files(landing_dir: Path, loaded: set[str]) -> list[Path]:
    return sorted(p for p in landing_dir.glob(PATTERN) if p.name not in loaded)


@dlt.source(name="usage_events")
def usage_events_source(landing_dir: str = dlt.config.value):
    folder = Path(landing_dir)

    @dlt.resource(name="events", primary_key="message_id", write_disposition="merge")
    def events():
        if not folder.is_dir():
            raise FileNotFoundError(f"usage_events: landing folder {folder} does not exist")
        state = dlt.current.resource_state()
        loaded = set(state.setdefault("loaded_files", []))
        for path in pending_files(folder, loaded):
            table, bad = read_file(path)
            if table is not None:
                loaded = dlt.current.source_schema().tables.get("events", {}).get("columns", {})
                yield align(table, loaded)
            if bad:
                yield quarantine.mark(bad)
            state["loaded_files"].append(path.name)

    return events
