"""Product usage events from the event collector's landing folder.

Files      `*.jsonl.gz` dropped into `sources.usage_events.landing_dir`, one call per line.
Formats    each line may come in any of three shapes, normalised into the columns of
           `connectors/contracts/usage_events.yml` (column `format` tells which):
           - `spine`: our collector's snake_case track calls (`message_id`, `type`, `event`,
             `user_id`, `account_id`, `timestamp`, `received_at`, `properties`); a line
             without `type` is a track call.
           - `segment`: the Segment tracking-API spec as Segment and RudderStack store it
             (track, identify, group, page, screen, alias; `messageId`, `userId`,
             `anonymousId`, `receivedAt`, ...). The account is a group call's `groupId`, else
             `context.groupId`; page and screen names are the event; an alias's `previousId`
             is its properties; traits are the call's `traits` (a user's on identify, the
             account's on group), else `context.traits`. RudderStack's `rudderId` (a hash of
             the two user ids) is kept as a column but never taken for a user.
           - `snowplow`: enriched events as the Snowplow Analytics SDK's `transform` emits them
             (`event_id`, `collector_tstamp`, `unstruct_event_<vendor>_<name>_<major>`,
             `contexts_<vendor>_<name>_<major>`, ...). Mapping: `page_view` is a page named by
             its `page_title` (properties: url, title, referrer); a self-describing event is a
             track call named by its `event_name` (properties: its data), except
             `screen_view`, a screen named by its data's `name`; a structured event is a track
             call named by its `se_action` (properties: the `se_*` fields); any other event
             (page_ping, transaction, ...) is a track call named by its kind. The user is
             `user_id`, the anonymous id `domain_userid`, else `network_userid`. Snowplow has
             no standard account field: the account is field `account_field` (default `id`)
             of the first entity of context `account_entity` (default
             `contexts_io_dataspine_workspace_1`, the SDK's key for the entity schema
             `iglu:io.dataspine/workspace/jsonschema/1-*-*`); both are dlt configuration of
             this source (`SOURCES__USAGE_EVENTS__ACCOUNT_ENTITY`, `..._ACCOUNT_FIELD`).
           The line's format is named by the key its message id comes in (`message_id`,
           `messageId`, `event_id`); an empty text counts as absent everywhere.
Increment  a file is read once: the names of loaded files are kept in dlt's resource state,
           which is committed with the data, so a crash never skips or double-reads a file.
Speed      DuckDB reads the files itself, inside the warehouse: the resource hands dlt a SQL
           model (`read_json` over the new files) and dlt's load step runs it as one
           `INSERT ... SELECT`, so events never pass through Python. Every value is read as
           text and cast in SQL, so a value that does not fit its column is seen, not nulled;
           the formats' alternative keys are merged there with COALESCE.
Write      append, skipping every event whose `message_id` is already loaded: the same event
           delivered twice (a re-sent file, a rerun after a crash) is stored once. A file
           re-sent under a second name in the same batch is recognised by its content and
           skipped.
Contract   a line is quarantined, with its reason, when it is not a JSON object, has no
           message id, is a Segment call without a type, names neither a user nor an
           anonymous id, is a track call without an event name, has no time at all, or carries an instant that is not ISO 8601
           (`ISO_8601`: a date, optionally a time with seconds and fraction, optionally `Z` or
           an offset). One leniency: a one-digit month or day (`2015-2-02T00:30:08.276Z`, as
           in Segment's own documentation) is read, since the instant it names is unambiguous
           and Segment accepts it; a naive instant is UTC. A number where text is expected
           is kept as its text (lossless).
           The SQL flags such lines `_rejected` (and a Snowplow self-describing event whose
           `unstruct_event_*` key it did not read); `settle` then re-reads just the files with
           flagged lines in Python (`read_file`, same rules), moves each bad line to
           `raw_usage.quarantine` with the file, line and reason, loads what Python can load,
           and deletes the flagged rows. Other keys evolve: a new top-level key becomes a
           column typed from its values (a key whose snake_case name is a column above is the
           column's source, not a column of its own). Keys are looked for in the first
           `SAMPLE_LINES` lines of each new file: a key that first appears deeper in a file is
           not read until a later file has it near the top (event details belong in
           `properties`, which is kept whole); a value that cannot be cast to its column's
           loaded type goes, through `settle`, to a variant column `<name>__v_<type>`, as dlt
           does for JSON sources, so one odd file never blocks the loads behind it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.destination.client import SqlModel
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

from connectors import contract, quarantine

SOURCE = "usage_events"
PATTERN = "*.jsonl.gz"
TABLE = "events"
CONTRACT = contract.table(SOURCE, TABLE)
CORE_COLUMNS = contract.dlt_columns(SOURCE, TABLE)
CORE_NAMES = frozenset(c["name"] for c in CORE_COLUMNS)
# Columns the loader computes: a key of that name in an event is not read into them.
OWN_COLUMNS = {"_file_name", "_rejected", "format"}
# Lines per new file read in Python to find top-level keys the warehouse has no column for.
SAMPLE_LINES = 100

# The key a line's message id comes in names its format.
MESSAGE_ID_KEYS = {"message_id": "spine", "messageId": "segment", "event_id": "snowplow"}
# Alternative keys of a column, first present wins.
USER_ID_KEYS = ("user_id", "userId")
ANONYMOUS_ID_KEYS = ("anonymous_id", "anonymousId", "domain_userid", "network_userid")
TIMESTAMP_KEYS = ("timestamp", "originalTimestamp", "receivedAt", "derived_tstamp", "dvce_created_tstamp",
                  "collector_tstamp")
RECEIVED_AT_KEYS = ("received_at", "receivedAt", "collector_tstamp")
STRUCT_KEYS = ("se_category", "se_action", "se_label", "se_property", "se_value")
# A Snowplow page view's fields, under the names Segment's page properties use.
PAGE_VIEW_KEYS = {"url": "page_url", "title": "page_title", "referrer": "page_referrer"}
TEXT_KEYS = (*MESSAGE_ID_KEYS, "type", "event", "name", "event_name", *USER_ID_KEYS, *ANONYMOUS_ID_KEYS,
             "account_id", "groupId", *dict.fromkeys(TIMESTAMP_KEYS + RECEIVED_AT_KEYS), "previousId",
             *STRUCT_KEYS, *PAGE_VIEW_KEYS.values())
UNSTRUCT_PREFIX = "unstruct_event_"
SCREEN_VIEW = "screen_view"
DEFAULT_ACCOUNT_ENTITY = "contexts_io_dataspine_workspace_1"
DEFAULT_ACCOUNT_FIELD = "id"

# The instants accepted (see Contract); SQL and Python test the same pattern.
ISO_8601 = (r"\d{4}-\d{1,2}-\d{1,2}(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
            r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?)?")
_ISO = re.compile(ISO_8601)
_UNPADDED_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")

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
    """A landing file that cannot be read at all."""


@dataclass(frozen=True)
class AccountEntity:
    """Where a Snowplow event names its account: `field` of the first entity under `key`."""

    key: str = DEFAULT_ACCOUNT_ENTITY
    field: str = DEFAULT_ACCOUNT_FIELD

    def of(self, record: dict) -> str | None:
        entities = record.get(self.key)
        if isinstance(entities, list) and entities and isinstance(entities[0], dict):
            return _text(entities[0].get(self.field))
        return None

    def json_path(self) -> str:
        return '$[0]."' + self.field.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def _json_text(value: Any) -> str:
    # As DuckDB writes a JSON value it reads as text: compact, unicode kept.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str | None:
    """A value read as text: empty is absent, a number or object is its JSON text."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else _json_text(value)


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


# --- The fast path: one SELECT over read_json --------------------------------------------------

class _Reader:
    """The keys `read_json` reads and the SQL that gives each as text or JSON."""

    def __init__(self):
        self.types: dict[str, str] = {}

    def want(self, key: str, read_type: str) -> None:
        # A key read as JSON for one use and as text for another is read as JSON: text is
        # taken from JSON losslessly, JSON from text is not.
        if self.types.get(key) != "JSON":
            self.types[key] = read_type

    def raw_text(self, key: str) -> str:
        column = f"src.{_ident(key)}"
        return f"json_extract_string({column}, '$')" if self.types.get(key) == "JSON" else column

    def text(self, key: str) -> str:
        return f"NULLIF({self.raw_text(key)}, '')"

    def json(self, key: str) -> str:
        return f"src.{_ident(key)}"

    def first(self, keys: Iterable[str]) -> str:
        return f"COALESCE({', '.join(self.text(k) for k in keys)})"

    def bad_instant(self, key: str) -> str:
        value = self.text(key)
        return (f"({value} IS NOT NULL AND (NOT regexp_full_match({value}, {_sql_string(ISO_8601)}) "
                f"OR TRY_CAST({value} AS TIMESTAMPTZ) IS NULL))")


def _json_object(pairs: dict[str, str]) -> str:
    # Merging into {} drops the keys whose value is null, as the Python path does.
    body = ", ".join(f"{_sql_string(k)}, {v}" for k, v in pairs.items())
    return f"json_merge_patch('{{}}', json_object({body}))"


def native_query(paths: list[Path], columns: dict[str, dict], keys: dict[str, str], dedup_table: str | None,
                 entity: AccountEntity = AccountEntity()) -> str:
    """The SELECT that reads `paths` in DuckDB: the contract's columns, the evolved ones, `_rejected`.

    `columns` are the table's columns by name, `keys` the JSON key each column outside the
    contract is read from.
    """
    r = _Reader()
    for key in TEXT_KEYS:
        r.want(key, "VARCHAR")
    unstruct_keys = sorted(k for k in keys.values() if k.startswith(UNSTRUCT_PREFIX))
    for key in ("properties", "traits", "context", entity.key, *unstruct_keys):
        r.want(key, "JSON")
    evolved, problems = [], []
    for name, key in keys.items():
        read_type, cast = READ_AS.get(columns[name]["data_type"], ("VARCHAR", None))
        r.want(key, read_type)
        evolved.append((name, key, read_type, cast))

    selects = []
    for name, key, read_type, cast in evolved:
        raw = r.json(key) if read_type == "JSON" else r.raw_text(key)
        if cast:
            selects.append(f"TRY_CAST({raw} AS {cast}) AS {_ident(name)}")
            problems.append(f"({raw} IS NOT NULL AND TRY_CAST({raw} AS {cast}) IS NULL)")
        else:
            selects.append(f"{raw} AS {_ident(name)}")

    unstruct = f"COALESCE({', '.join(r.json(k) for k in unstruct_keys)})" if unstruct_keys else "NULL::JSON"
    fmt = "CASE " + " ".join(f"WHEN {r.text(k)} IS NOT NULL THEN {_sql_string(f)}" for k, f in MESSAGE_ID_KEYS.items()) + " END"
    kind, event_name = r.text("event"), r.text("event_name")
    calls = f"""
        SELECT
            {fmt} AS fmt,
            {r.first(MESSAGE_ID_KEYS)} AS message_id,
            NULLIF(lower(trim({r.text("type")})), '') AS sent_type,
            {kind} AS kind,
            {event_name} AS event_name,
            {unstruct} AS unstruct,
            {r.first(USER_ID_KEYS)} AS user_id,
            {r.first(ANONYMOUS_ID_KEYS)} AS anonymous_id,
            COALESCE({r.text("account_id")}, {r.text("groupId")}, NULLIF({r.json("context")} ->> 'groupId', ''),
                     NULLIF(json_extract_string({r.json(entity.key)}, {_sql_string(entity.json_path())}), '')) AS account_id,
            {r.first(TIMESTAMP_KEYS)} AS timestamp_text,
            {r.first(RECEIVED_AT_KEYS)} AS received_text,
            {r.json("properties")} AS sent_properties,
            {r.text("previousId")} AS previous_id,
            {_json_object({k: r.text(k) for k in STRUCT_KEYS[:-1]} | {"se_value": f"TRY_CAST({r.text('se_value')} AS DOUBLE)"})} AS struct_properties,
            {_json_object({k: r.text(v) for k, v in PAGE_VIEW_KEYS.items()})} AS page_view_properties,
            COALESCE({r.json("traits")}, {r.json("context")} -> 'traits') AS sent_traits,
            {r.text("name")} AS name,
            {" OR ".join(r.bad_instant(k) for k in dict.fromkeys(TIMESTAMP_KEYS + RECEIVED_AT_KEYS))} AS bad_instant,
            {" OR ".join(problems) or "false"} AS bad_value,
            {", ".join(selects) + "," if selects else ""}
            parse_filename(src.__path) AS _file_name
        FROM src"""
    typed = """
        SELECT
            *,
            CASE fmt
                WHEN 'snowplow' THEN CASE
                    WHEN kind = 'page_view' THEN 'page'
                    WHEN kind = 'unstruct' AND event_name = 'screen_view' THEN 'screen'
                    ELSE 'track' END
                WHEN 'spine' THEN COALESCE(sent_type, 'track')
                ELSE sent_type END AS call_type
        FROM calls"""
    named = """
        SELECT
            *,
            CASE WHEN fmt = 'snowplow' THEN CASE kind
                    WHEN 'page_view' THEN json_extract_string(page_view_properties, '$.title')
                    WHEN 'struct' THEN json_extract_string(struct_properties, '$.se_action')
                    WHEN 'unstruct' THEN CASE WHEN call_type = 'screen' THEN NULLIF(unstruct ->> 'name', '')
                                              ELSE event_name END
                    ELSE kind END
                ELSE COALESCE(kind, name) END AS call_event
        FROM typed"""
    final = {
        "message_id": "message_id",
        "type": "call_type",
        "event": "call_event",
        "user_id": "user_id",
        "anonymous_id": "anonymous_id",
        "account_id": "account_id",
        "timestamp": "TRY_CAST(timestamp_text AS TIMESTAMPTZ)",
        "received_at": "TRY_CAST(received_text AS TIMESTAMPTZ)",
        "properties": """CASE WHEN fmt = 'snowplow' THEN CASE kind
                WHEN 'unstruct' THEN unstruct WHEN 'struct' THEN struct_properties
                WHEN 'page_view' THEN page_view_properties END
            ELSE COALESCE(sent_properties, CASE WHEN previous_id IS NOT NULL
                                                THEN json_object('previousId', previous_id) END) END""",
        "traits": "CASE WHEN fmt = 'snowplow' THEN NULL ELSE sent_traits END",
        "format": "fmt",
    }
    rejected = """(message_id IS NULL
            OR call_type IS NULL
            OR (user_id IS NULL AND anonymous_id IS NULL)
            OR (call_type = 'track' AND call_event IS NULL)
            OR timestamp_text IS NULL OR bad_instant OR bad_value
            -- a self-describing event whose data is under a key not read: Python reads it
            OR (fmt = 'snowplow' AND kind = 'unstruct' AND unstruct IS NULL))"""
    struct = "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(t)}" for k, t in r.types.items()) + "}"
    files = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
    source = (f"read_json({files}, format = 'newline_delimited', columns = {struct}, "
              f"ignore_errors = true, filename = '__path')")
    outputs = [f"{expr} AS {_ident(name)}" for name, expr in final.items()]
    outputs += [f"{_ident(name)} AS {_ident(name)}" for name, *_ in evolved]
    outputs += ['_file_name AS "_file_name"', f'{rejected} AS "_rejected"']
    sql = (f"WITH src AS (SELECT * FROM {source}), calls AS ({calls}), typed AS ({typed}), named AS ({named}) "
           f"SELECT {', '.join(outputs)} FROM named")
    if dedup_table:
        sql += (f" WHERE NOT EXISTS (SELECT 1 FROM {dedup_table} AS loaded "
                f"WHERE loaded.message_id = named.message_id AND loaded._rejected IS NOT TRUE)")
    return sql


# --- The Python path: the same rules, line by line ---------------------------------------------

def parse_instant(value: str) -> datetime | None:
    """The instant an ISO 8601 text names (see Contract), or None."""
    if not _ISO.fullmatch(value):
        return None
    padded = _UNPADDED_DATE.sub(lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}", value)
    try:
        instant = datetime.fromisoformat(padded.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


def _first(record: dict, keys: Iterable[str]) -> str | None:
    return next((t for t in (_text(record.get(k)) for k in keys) if t is not None), None)


def _object(pairs: dict[str, Any]) -> dict:
    return {k: v for k, v in pairs.items() if v is not None}


def _number(value: Any) -> float | None:
    try:
        return float(_text(value)) if _text(value) is not None else None
    except ValueError:
        return None


def _snowplow_call(record: dict) -> tuple[str, str | None, Any]:
    """(type, event, properties) of a Snowplow event, per the mapping in the module doc."""
    kind = _text(record.get("event"))
    unstruct = next((v for k, v in record.items() if k.startswith(UNSTRUCT_PREFIX) and v is not None), None)
    struct = _object({k: _text(record.get(k)) for k in STRUCT_KEYS[:-1]} | {"se_value": _number(record.get("se_value"))})
    page = _object({k: _text(record.get(v)) for k, v in PAGE_VIEW_KEYS.items()})
    if kind == "page_view":
        return "page", page.get("title"), page
    if kind == "struct":
        return "track", struct.get("se_action"), struct
    if kind == "unstruct":
        if _text(record.get("event_name")) == SCREEN_VIEW:
            name = _text(unstruct.get("name")) if isinstance(unstruct, dict) else None
            return "screen", name, unstruct
        return "track", _text(record.get("event_name")), unstruct
    return "track", kind, None


def normalise(record: dict, entity: AccountEntity = AccountEntity()) -> tuple[dict | None, str | None]:
    """The contract's columns of one parsed line, or the reason it cannot be loaded."""
    fmt = next((f for k, f in MESSAGE_ID_KEYS.items() if _text(record.get(k)) is not None), None)
    if fmt is None:
        return None, "missing required field(s): message_id"
    context = record.get("context") if isinstance(record.get("context"), dict) else {}
    row = {
        "message_id": _first(record, MESSAGE_ID_KEYS),
        "user_id": _first(record, USER_ID_KEYS),
        "anonymous_id": _first(record, ANONYMOUS_ID_KEYS),
        "account_id": _first(record, ("account_id", "groupId")) or _text(context.get("groupId")) or entity.of(record),
        "format": fmt,
    }
    if fmt == "snowplow":
        row["type"], row["event"], row["properties"] = _snowplow_call(record)
        row["traits"] = None
    else:
        sent_type = (_text(record.get("type")) or "").strip().lower() or None
        row["type"] = (sent_type or "track") if fmt == "spine" else sent_type
        row["event"] = _first(record, ("event", "name"))
        previous = _text(record.get("previousId"))
        row["properties"] = record.get("properties")
        if row["properties"] is None and previous is not None:
            row["properties"] = {"previousId": previous}
        row["traits"] = record.get("traits") if record.get("traits") is not None else context.get("traits")
    if row["type"] is None:
        return None, "missing required field(s): type"
    if row["user_id"] is None and row["anonymous_id"] is None:
        return None, "neither a user id nor an anonymous id"
    if row["type"] == "track" and row["event"] is None:
        return None, "missing required field(s): event"
    for key in dict.fromkeys(TIMESTAMP_KEYS + RECEIVED_AT_KEYS):
        value = _text(record.get(key))
        if value is not None and parse_instant(value) is None:
            return None, f"{key} is not an ISO 8601 timestamp: {record.get(key)!r}"
    for name, keys in (("timestamp", TIMESTAMP_KEYS), ("received_at", RECEIVED_AT_KEYS)):
        value = _first(record, keys)
        row[name] = parse_instant(value) if value is not None else None
    if row["timestamp"] is None:
        return None, "missing required field(s): timestamp"
    for name in ("properties", "traits"):
        row[name] = None if row[name] is None else _json_text(row[name])
    return row, None


def _problem(line: str, entity: AccountEntity = AccountEntity()) -> tuple[dict | None, str | None]:
    """The parsed event with its contract columns (`normalise`), or the reason it cannot be loaded."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(record, dict):
        return None, f"not a JSON object but {type(record).__name__}"
    row, reason = normalise(record, entity)
    if reason:
        return None, reason
    return {"row": row, "record": record}, None


def _extra_columns(records: list[dict], naming) -> tuple[dict[str, pa.Array], list[dict]]:
    """The keys outside the contract, as columns named as dlt names them, and hints for the JSON ones."""
    values: dict[str, list] = {}
    for index, record in enumerate(records):
        for key, value in record.items():
            name = naming.normalize_identifier(key)
            if name in CORE_NAMES or name.startswith("_dlt"):
                continue
            values.setdefault(name, [None] * len(records))[index] = value
    arrays, hints = {}, []
    for name, column in values.items():
        present = [v for v in column if v is not None]
        if any(isinstance(v, (dict, list)) for v in present):
            arrays[name] = pa.array([None if v is None else _json_text(v) for v in column], pa.string())
            hints.append({"name": name, "data_type": "json"})
            continue
        try:
            arrays[name] = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[name] = pa.array([_text(v) for v in column], pa.string())
        if pa.types.is_null(arrays[name].type):
            del arrays[name]
    return arrays, hints


def read_file(path: Path, entity: AccountEntity = AccountEntity(), naming=None) -> tuple[pa.Table | None, list[dict], list[dict]]:
    """Parse one collector file in Python: (the good events as Arrow, hints for its JSON columns,
    quarantine rows for the bad lines)."""
    naming = naming or dlt.Schema("usage_events").naming
    good, bad = [], []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parsed, reason = _problem(line, entity)
            if reason:
                bad.append(quarantine.row(SOURCE, TABLE, reason, line, f"{path.name}:{number}"))
            else:
                good.append(parsed)
    if not good:
        return None, [], bad
    columns = {name: pa.array([g["row"][name] for g in good], CONTRACT.arrow_type(name))
               for name in CONTRACT.columns if name not in ("_file_name", "_rejected")}
    extras, hints = _extra_columns([g["record"] for g in good], naming)
    columns |= extras
    columns["_file_name"] = pa.array([path.name] * len(good), pa.string())
    columns["_rejected"] = pa.array([False] * len(good), pa.bool_())
    return pa.table(columns), hints, bad


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


# Arrow types for the dlt types an untyped collector column can take.
ARROW_OF = {"text": pa.string(), "bigint": pa.int64(), "double": pa.float64(), "bool": pa.bool_()}


def align(table: pa.Table, loaded: dict[str, dict]) -> pa.Table:
    """Fit the columns outside the contract to the types already loaded (see Contract above)."""
    for index, field in enumerate(table.schema):
        known = loaded.get(field.name, {}).get("data_type")
        if field.name in CORE_NAMES or known is None:
            continue
        have = get_column_type_from_py_arrow(field.type)["data_type"]
        # JSON travels as its text.
        if have == known or (known == "json" and have == "text"):
            continue
        if known in ARROW_OF:
            try:
                table = table.set_column(index, field.name, table.column(index).cast(ARROW_OF[known]))
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        table = table.rename_columns([*table.column_names[:index], f"{field.name}__v_{have}", *table.column_names[index + 1 :]])
    return table


def _columns_and_keys(schema_columns: dict[str, dict], state_keys: dict[str, str], sampled: dict[str, str],
                      naming) -> tuple[dict[str, dict], dict[str, str], list[dict]]:
    """Every column the SQL writes, the JSON key each column outside the contract comes from,
    and the columns new to dlt."""
    columns = {c["name"]: c for c in CORE_COLUMNS}
    columns.update({n: c for n, c in schema_columns.items() if c.get("data_type")})
    keys = {n: k for n, k in state_keys.items() if n not in CORE_NAMES}
    # Columns another path added (a key first met in a re-read file) are read from now on;
    # dlt's own and variant columns are not keys of an event.
    for name in columns:
        if name not in keys and name not in CORE_NAMES and not name.startswith("_dlt") and "__v_" not in name:
            keys[name] = name
    new: list[dict] = []
    known_keys = set(keys.values())
    for key, data_type in sampled.items():
        name = naming.normalize_identifier(key)
        if key in known_keys or name in keys or name in CORE_NAMES or name.startswith("_dlt"):
            continue
        keys[name] = key
        columns[name] = {"name": name, "data_type": data_type}
        new.append(columns[name])
    return columns, keys, new


@dlt.source(name=SOURCE)
def usage_events_source(landing_dir: str = dlt.config.value, recheck: tuple[str, ...] = (),
                        account_entity: str = DEFAULT_ACCOUNT_ENTITY, account_field: str = DEFAULT_ACCOUNT_FIELD):
    """`recheck` names loaded files to read again in Python (see `settle`); `account_entity` and
    `account_field` say where Snowplow events name their account (see Formats)."""
    folder = Path(landing_dir)
    entity = AccountEntity(account_entity, account_field)

    @dlt.resource(name=TABLE, write_disposition="append", columns=CORE_COLUMNS)
    def events():
        if not folder.is_dir():
            raise FileNotFoundError(f"usage_events: landing folder {folder} does not exist")
        state = dlt.current.resource_state()
        state.setdefault("loaded_files", [])
        pipeline = dlt.current.pipeline()
        if recheck:
            yield from _reread(folder, recheck, pipeline, entity)
            return
        pending = pending_files(folder, set(state["loaded_files"]))
        if not pending:
            return
        pending, resent = distinct_content(pending)
        schema = dlt.current.source_schema()
        columns, keys, new = _columns_and_keys(
            schema.tables.get(TABLE, {}).get("columns", {}), state.get("keys", {}), sample_keys(pending), schema.naming
        )
        query = native_query(pending, columns, keys, _existing_table(pipeline), entity)
        model = Path(pipeline.working_dir) / f"usage_events_{uuid.uuid4().hex}.model"
        model.write_text(str(SqlModel.from_query_string(query, dialect="duckdb")))
        try:
            yield dlt.mark.with_file_import(str(model), "model", hints=dlt.mark.make_hints(columns=new) if new else None)
        finally:
            model.unlink(missing_ok=True)
        state["loaded_files"].extend(sorted([p.name for p in pending] + list(resent)))
        state["keys"] = keys

    return events


def _reread(folder: Path, names: Iterable[str], pipeline: dlt.Pipeline, entity: AccountEntity):
    """Read files in Python: the bad lines to quarantine, and the events the SQL could not load."""
    table_name = _existing_table(pipeline)
    schema = dlt.current.source_schema()
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"usage_events: {path} was loaded with rejected lines and is needed again to "
                                    "quarantine them; put it back in the landing folder")
        table, hints, bad = read_file(path, entity, schema.naming)
        if table is not None and table_name:
            with pipeline.sql_client() as client:
                ids = table.column("message_id").to_pylist()
                rows = client.execute_sql(f"select message_id from {table_name} where _rejected is not true "
                                          "and list_contains(%s, message_id)", ids)
            loaded = pa.array(sorted({r[0] for r in rows}), pa.string())
            table = table.filter(pc.invert(pc.is_in(table.column("message_id"), loaded)))
        if table is not None and table.num_rows:
            table = align(table, schema.tables.get(TABLE, {}).get("columns", {}))
            yield dlt.mark.with_hints(table, dlt.mark.make_hints(columns=hints)) if hints else table
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
