"""Product usage events from the event collector's landing folder.

Files      `*.jsonl.gz` (one track call per line) dropped into `sources.usage_events.landing_dir`;
           nested `properties` land as a JSON column.
Increment  a file is read once: the names of loaded files are kept in dlt's resource state,
           which is committed with the data, so a crash never skips or double-reads a file.
Write      merge on `message_id`, so the same event delivered twice is stored once.
Speed      files are parsed by pyarrow and handed to dlt as Arrow tables (dlt's fast path).
"""

from __future__ import annotations

from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.json as pj

PATTERN = "*.jsonl.gz"
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


def read_file(path: Path) -> pa.Table:
    """Parse one collector file into Arrow, tagging each row with the file it came from."""
    with pa.input_stream(str(path), compression="gzip") as stream:
        table = pj.read_json(stream)
    for name, type_ in TYPES.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table.column(name).cast(type_))
    if "message_id" not in table.column_names or table.column("message_id").null_count:
        raise ValueError(f"usage_events: {path.name} has events without a message_id")
    # Declared non-null like dlt's primary-key hint, so dlt has no differing hint to warn about.
    key = table.schema.get_field_index("message_id")
    table = table.cast(table.schema.set(key, table.schema.field(key).with_nullable(False)))
    return table.append_column("_file_name", pa.array([path.name] * table.num_rows, pa.string()))


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
            yield read_file(path)
            state["loaded_files"].append(path.name)

    return events
