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
             account's on group), else `context.traits`; the time is `timestamp`, else
             `originalTimestamp`, else `receivedAt`, the arrival `receivedAt`. RudderStack's
             `rudderId` (a hash of the two user ids) is kept as a column but never taken for
             a user.
           - `snowplow`: enriched events as the Snowplow Analytics SDK's `transform` emits them
             (`event_id`, `collector_tstamp`, `unstruct_event_<vendor>_<name>_<major>`,
             `contexts_<vendor>_<name>_<major>`, ...). Mapping: `page_view` is a page named by
             its `page_title` (properties: url, title, referrer); a self-describing event is a
             track call named by its `event_name` (properties: its data), except
             `screen_view`, a screen named by its data's `name`; a structured event is a track
             call named by its `se_action` (properties: the `se_*` fields); any other event
             (page_ping, transaction, ...) is a track call named by its kind. The user is
             `user_id`, the anonymous id `domain_userid`, else `network_userid`; the time is
             `derived_tstamp`, else `dvce_created_tstamp`, else `collector_tstamp`, the arrival
             `collector_tstamp`; there are no traits. Snowplow has
             no standard account field: the account is field `account_field` (default `id`)
             of the first entity of context `account_entity` (default
             `contexts_io_dataspine_workspace_1`, the SDK's key for the entity schema
             `iglu:io.dataspine/workspace/jsonschema/1-*-*`); both are dlt configuration of
             this source (`SOURCES__USAGE_EVENTS__ACCOUNT_ENTITY`, `..._ACCOUNT_FIELD`).
           The line's format is named by the key its message id comes in (`message_id`,
           `messageId`, `event_id`, looked for in that order), and each column is read from
           that format's keys only (`Format`); an empty text counts as absent everywhere.
Rejected   a file that cannot be read at all (not gzip, cut short or corrupt, not JSON lines:
           none of its first `SAMPLE_LINES` lines is a JSON object, or not readable by the
           pipeline) is set aside before anything is loaded: moved to the `rejected` folder
           beside the landing folder (`rejected_dir`) with a sidecar `<file>.reason.txt` that
           says why, so it never stops the files beside it. Each set-aside file is an alert
           until it is gone from that folder (deleted, or fixed and put back in the landing
           folder, where it loads like a new file); the next run then deletes its sidecar.
           Every new file is decompressed to its end before the load, so a truncated one is
           found here and not by the load; the collector must therefore drop files whole
           (write elsewhere, then rename), since a file still being written looks truncated.
Increment  a file is read once: the names of loaded files are kept in dlt's resource state,
           which is committed with the data, so a crash never skips or double-reads a file.
Speed      DuckDB reads the files itself, inside the warehouse: the resource hands dlt a SQL
           model (`read_json` over the new files) and dlt's load step runs it as one
           `INSERT ... SELECT`, so events never pass through Python. Every value is read as
           text and cast in SQL, so a value that does not fit its column is seen, not nulled;
           the formats' alternative keys are merged there with COALESCE. Every key declared
           to `read_json` costs time on every line, so only the keys of the formats found in
           the batch's sample are read; a line in another format has no message id there and
           is flagged for the Python path, which reads it whole. A server warehouse
           (PostgreSQL) cannot read the landing folder: there the same query runs in an
           in-memory DuckDB of the loading process, and its rows reach dlt as Arrow batches.
Write      append, skipping every event whose `message_id` is already loaded: the same event
           delivered twice (a re-sent file, a rerun after a crash) is stored once. A file
           re-sent under a second name in the same batch is recognised by its content and
           skipped.
Contract   a line is quarantined, with its reason, when it is not a JSON object, has no
           message id, is a Segment call without a type, names neither a user nor an
           anonymous id, is a track call without an event name, has no time at all, or
           carries (in a key its format reads an instant from) a value that is not an ISO 8601
           instant. An instant is read when it starts with a four-digit year and a dash and
           DuckDB reads it as a timestamp (`INSTANT`): a date, optionally a time (after `T` or
           a space) with fraction and a `Z`, an offset or a zone name; a naive instant is UTC.
           DuckDB's leniencies are kept on purpose, since each names one instant: a one-digit
           month or day (`2015-2-02T00:30:08.276Z`, as Segment's own documentation prints
           it, and as Segment accepts it), a one-digit hour. Epoch numbers, `12/12/2015`-style
           dates, two-digit years and words (`yesterday`, `epoch`, `infinity`) are not
           instants. The Python path reads instants with the same expression in DuckDB, so
           both paths accept exactly the same values. A number where text is expected is kept
           as its text (lossless).
           The SQL flags such lines `_rejected` (and a Snowplow self-describing event whose
           `unstruct_event_*` key it did not read); `settle` then re-reads just the files with
           flagged lines in Python (`read_file`, same rules), moves each bad line to
           `raw_usage_events.quarantine` with the file, line and reason, loads what Python can load,
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
import shutil
import uuid
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import dlt
import duckdb
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
# Lines per new file read in Python to find top-level keys the warehouse has no column for.
SAMPLE_LINES = 100

STRUCT_KEYS = ("se_category", "se_action", "se_label", "se_property", "se_value")
# A Snowplow page view's fields, under the names Segment's page properties use.
PAGE_VIEW_KEYS = {"url": "page_url", "title": "page_title", "referrer": "page_referrer"}


@dataclass(frozen=True)
class Format:
    """Where one collector shape keeps the contract's columns: the first present key wins."""

    name: str
    message_id: str
    user_id: tuple[str, ...]
    anonymous_id: tuple[str, ...]
    account_id: tuple[str, ...]  # top-level keys; Segment adds context.groupId, Snowplow its entity
    timestamp: tuple[str, ...]
    received_at: tuple[str, ...]
    other_text: tuple[str, ...]  # the other keys its mapping reads as text
    json: tuple[str, ...]  # and as JSON

    @property
    def instants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.timestamp + self.received_at))

    @property
    def unused_instants(self) -> tuple[str, ...]:
        """Instant keys that may be present without being the one a column is taken from."""
        sole = {chain[0] for chain in (self.timestamp, self.received_at) if len(chain) == 1}
        return tuple(k for k in self.instants if k not in sole)

    @property
    def text(self) -> tuple[str, ...]:
        return (self.message_id, *self.user_id, *self.anonymous_id, *self.account_id, *self.instants, *self.other_text)


SPINE = Format(
    "spine",
    "message_id",
    ("user_id",),
    ("anonymous_id",),
    ("account_id",),
    ("timestamp",),
    ("received_at",),
    ("type", "event"),
    ("properties", "traits"),
)
SEGMENT = Format(
    "segment",
    "messageId",
    ("userId",),
    ("anonymousId",),
    ("groupId",),
    ("timestamp", "originalTimestamp", "receivedAt"),
    ("receivedAt",),
    ("type", "event", "name", "previousId"),
    ("properties", "traits", "context"),
)
SNOWPLOW = Format(
    "snowplow",
    "event_id",
    ("user_id",),
    ("domain_userid", "network_userid"),
    (),
    ("derived_tstamp", "dvce_created_tstamp", "collector_tstamp"),
    ("collector_tstamp",),
    ("event", "event_name", *STRUCT_KEYS, *PAGE_VIEW_KEYS.values()),
    (),
)
# By the key a line's message id comes in, which names its format; looked for in this order.
FORMATS = {f.message_id: f for f in (SPINE, SEGMENT, SNOWPLOW)}
UNSTRUCT_PREFIX = "unstruct_event_"
SCREEN_VIEW = "screen_view"
DEFAULT_ACCOUNT_ENTITY = "contexts_io_dataspine_workspace_1"
DEFAULT_ACCOUNT_FIELD = "id"

# An instant is read when it starts with a four-digit year and a dash and DuckDB reads it as a
# timestamp (see Contract). Both paths run this one expression in DuckDB, so they never disagree.
INSTANT = "CASE WHEN {v} LIKE '____-%' AND {v} >= '0' AND {v} < ':' THEN TRY_CAST({v} AS TIMESTAMPTZ) END"

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


REJECTED = "rejected"
REASON_SUFFIX = ".reason.txt"


@dataclass(frozen=True)
class RejectedFile:
    """A landing file set aside in the rejected folder, and why."""

    name: str
    reason: str
    path: Path
    set_aside_at: str  # ISO 8601, UTC


def rejected_dir(landing_dir: str | Path) -> Path:
    """Where unreadable landing files are set aside: `rejected/` beside the landing folder."""
    return Path(landing_dir).parent / REJECTED


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


def file_keys(path: Path, lines: int = SAMPLE_LINES) -> dict[str, str]:
    """The top-level keys of a file's first `lines` lines; raises `BadFile` with the reason
    when the file cannot be read at all. The rest of the file is decompressed too (and
    dropped), so a file cut short or corrupt anywhere is found here, not by the load."""
    keys: dict[str, str] = {}
    try:
        if path.stat().st_size == 0:
            raise BadFile(f"{path.name}: cannot be read: empty file (0 bytes), not a gzip stream")
        objects = seen = 0
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in islice(f, lines):
                if not line.strip():
                    continue
                seen += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the SQL flags it and `settle` quarantines it
                if isinstance(record, dict):
                    objects += 1
                    for key, value in record.items():
                        if value is not None and key not in keys:
                            keys[key] = _json_type(value)
            while f.buffer.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise BadFile(f"{path.name}: cannot be read: {exc}") from exc
    if seen and not objects:
        raise BadFile(f"{path.name}: not JSON lines: none of its first {seen} line(s) is a JSON object")
    return keys


def set_aside(path: Path, reason: str, landing_dir: Path) -> RejectedFile:
    """Move an unreadable landing file to the rejected folder, with a sidecar saying why.

    A file of the same name set aside earlier is replaced: the newest delivery is the one to
    look at."""
    folder = rejected_dir(landing_dir)
    at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    target = folder / path.name
    sidecar = folder / (path.name + REASON_SUFFIX)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(f"file: {path.name}\nfrom: {path.parent}\nset aside at: {at}\nreason: {reason}\n")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        shutil.move(str(path), str(target))
    except OSError as exc:
        raise OSError(
            f"usage_events: {path} {reason}, and it cannot be set aside in {folder} ({exc}); "
            "make both folders writable, or remove the file"
        ) from exc
    return RejectedFile(path.name, reason, target, at)


def _sidecars(landing_dir: str | Path) -> list[tuple[Path, Path, bool]]:
    """(sidecar, set-aside file, whether that file is still there) for each sidecar."""
    folder = rejected_dir(landing_dir)
    found = []
    for sidecar in sorted(folder.glob("*" + REASON_SUFFIX)) if folder.is_dir() else []:
        path = folder / sidecar.name.removesuffix(REASON_SUFFIX)
        found.append((sidecar, path, path.exists() or path.is_symlink()))
    return found


def rejected_files(landing_dir: str | Path) -> list[RejectedFile]:
    """The files set aside and still in the rejected folder, with their reasons."""
    found = []
    for sidecar, path, present in _sidecars(landing_dir):
        if present:
            fields = dict(line.split(": ", 1) for line in sidecar.read_text().splitlines() if ": " in line)
            found.append(RejectedFile(path.name, fields.get("reason", "unknown"), path, fields.get("set aside at", "")))
    return found


def screen(paths: list[Path], landing_dir: Path) -> tuple[list[Path], dict[str, str], list[RejectedFile]]:
    """(the readable files, their sampled keys, the files set aside)."""
    # The sidecar of a file that was deleted or taken back has nothing left to explain.
    for sidecar, _, present in _sidecars(landing_dir):
        if not present:
            sidecar.unlink(missing_ok=True)
    readable, keys, rejected = [], {}, []
    for path in paths:
        try:
            found = file_keys(path)
        except BadFile as exc:
            rejected.append(set_aside(path, str(exc).removeprefix(f"{path.name}: "), landing_dir))
            continue
        readable.append(path)
        for key, data_type in found.items():
            keys.setdefault(key, data_type)
    return readable, keys, rejected


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
    """The keys `read_json` reads and the SQL that gives each as text or JSON (NULL for a key
    it does not read)."""

    def __init__(self):
        self.types: dict[str, str] = {}

    def want(self, key: str, read_type: str) -> None:
        # A key read as JSON for one use and as text for another is read as JSON: text is
        # taken from JSON losslessly, JSON from text is not.
        if self.types.get(key) != "JSON":
            self.types[key] = read_type

    def raw_text(self, key: str) -> str:
        if key not in self.types:
            return "NULL::VARCHAR"
        column = f"src.{_ident(key)}"
        return f"json_extract_string({column}, '$')" if self.types[key] == "JSON" else column

    def text(self, key: str) -> str:
        return f"NULLIF({self.raw_text(key)}, '')" if key in self.types else "NULL::VARCHAR"

    def json(self, key: str) -> str:
        return f"src.{_ident(key)}" if key in self.types else "NULL::JSON"

    def first(self, keys: Iterable[str]) -> str:
        keys = [k for k in keys if k in self.types]
        return f"COALESCE({', '.join(self.text(k) for k in keys)})" if keys else "NULL::VARCHAR"

    def bad_instant(self, key: str) -> str:
        value = self.text(key)
        return f"({value} IS NOT NULL AND {INSTANT.format(v=value)} IS NULL)"


def _json_object(pairs: dict[str, str]) -> str:
    # Merging into {} drops the keys whose value is null, as the Python path does.
    body = ", ".join(f"{_sql_string(k)}, {v}" for k, v in pairs.items())
    return f"json_merge_patch('{{}}', json_object({body}))"


def _by_format(formats: list[Format], expression) -> str:
    """`expression(format)` for the line's own format. A batch of one format needs no CASE: a
    line in another is flagged whatever the expression gives for it."""
    if len(formats) == 1:
        return expression(formats[0])
    branches = " ".join(f"WHEN {_sql_string(f.name)} THEN {expression(f)}" for f in formats)
    return f"CASE __fmt {branches} END"


# Per format, the SQL of the calls' type, event, properties and traits (over the columns the
# query's `calls` step names).
_STRUCT_PROPERTIES = _json_object(
    {k: f"__{k}" for k in STRUCT_KEYS[:-1]} | {"se_value": "TRY_CAST(__se_value AS DOUBLE)"}
)
_PAGE_VIEW_PROPERTIES = _json_object({k: f"__{v}" for k, v in PAGE_VIEW_KEYS.items()})
CALL_TYPE = {
    "spine": "COALESCE(__sent_type, 'track')",
    "segment": "__sent_type",
    "snowplow": """CASE WHEN __kind = 'page_view' THEN 'page'
                        WHEN __kind = 'unstruct' AND __event_name = 'screen_view' THEN 'screen'
                        ELSE 'track' END""",
}
CALL_EVENT = {
    "spine": "__kind",
    "segment": "COALESCE(__kind, __name)",
    "snowplow": """CASE __kind WHEN 'page_view' THEN __page_title WHEN 'struct' THEN __se_action
                        WHEN 'unstruct' THEN CASE WHEN __type = 'screen' THEN NULLIF(__unstruct ->> 'name', '')
                                                  ELSE __event_name END
                        ELSE __kind END""",
}
CALL_PROPERTIES = {
    "spine": "__properties",
    "segment": """COALESCE(__properties, CASE WHEN __previous_id IS NOT NULL
                                             THEN json_object('previousId', __previous_id) END)""",
    # JSON is built only in the branches of the rows that need it.
    "snowplow": f"""CASE __kind WHEN 'unstruct' THEN __unstruct WHEN 'struct' THEN {_STRUCT_PROPERTIES}
                        WHEN 'page_view' THEN {_PAGE_VIEW_PROPERTIES} END""",
}


CALL_TYPES = ("track", "page", "screen", "identify", "group", "alias")


def _call_type_sql(sent: str) -> str:
    # Lower-cased and trimmed as the Python path does; a call type as the spec writes it (all
    # of them, nearly always) is taken as it is, without building a new string per line.
    known = ", ".join(_sql_string(t) for t in CALL_TYPES)
    return f"CASE WHEN {sent} IN ({known}) THEN {sent} ELSE NULLIF(lower(trim({sent})), '') END"


def formats_in(sampled: Iterable[str]) -> list[Format]:
    """The formats whose message id key the sampled keys hold; all when none does."""
    found = [f for key, f in FORMATS.items() if key in sampled]
    return found or list(FORMATS.values())


def native_query(
    paths: list[Path],
    columns: dict[str, dict],
    keys: dict[str, str],
    dedup_table: str | None,
    entity: AccountEntity = AccountEntity(),
    formats: list[Format] | None = None,
) -> str:
    """The SELECT that reads `paths` in DuckDB: the contract's columns, the evolved ones, `_rejected`.

    `columns` are the table's columns by name, `keys` the JSON key each column outside the
    contract is read from, `formats` the ones the sample found. Only their keys are read (each
    declared key costs DuckDB time on every line); a line in another format is flagged for
    the Python path. Inside the query every column is named `__<something>`, so no name an
    event brings can collide with one the query needs.
    """
    formats = formats or list(FORMATS.values())
    r = _Reader()
    for key in FORMATS:
        r.want(key, "VARCHAR")
    for f in formats:
        for key in f.text:
            r.want(key, "VARCHAR")
        for key in f.json:
            r.want(key, "JSON")
    unstruct_keys = sorted(k for k in keys.values() if k.startswith(UNSTRUCT_PREFIX))
    if SNOWPLOW in formats:
        for key in (entity.key, *unstruct_keys):
            r.want(key, "JSON")
    evolved = []
    for name, key in keys.items():
        read_type, cast = READ_AS.get(columns[name]["data_type"], ("VARCHAR", None))
        r.want(key, read_type)
        evolved.append((name, key, read_type, cast))

    passed, problems = [], []
    for index, (_name, key, read_type, cast) in enumerate(evolved):
        raw = r.json(key) if read_type == "JSON" else r.raw_text(key)
        if cast:
            passed.append(f"TRY_CAST({raw} AS {cast}) AS __c{index}")
            problems.append(f"({raw} IS NOT NULL AND TRY_CAST({raw} AS {cast}) IS NULL)")
        else:
            passed.append(f"{raw} AS __c{index}")
    snowplow_fields = [*STRUCT_KEYS, *PAGE_VIEW_KEYS.values()]
    unstruct = f"COALESCE({', '.join(r.json(k) for k in unstruct_keys)})" if unstruct_keys else "NULL::JSON"
    fmt = (
        "CASE "
        + " ".join(f"WHEN {r.text(k)} IS NOT NULL THEN {_sql_string(f.name)}" for k, f in FORMATS.items())
        + " END"
    )

    def account(f: Format) -> str:
        named = [r.text(k) for k in f.account_id]
        if f is SEGMENT:
            named.append(f"NULLIF({r.json('context')} ->> 'groupId', '')")
        if f is SNOWPLOW:
            named.append(f"NULLIF(json_extract_string({r.json(entity.key)}, {_sql_string(entity.json_path())}), '')")
        return f"COALESCE({', '.join(named)})"

    def traits(f: Format) -> str:
        if f is SEGMENT:
            return f"COALESCE({r.json('traits')}, {r.json('context')} -> 'traits')"
        return r.json("traits") if f is SPINE else "NULL::JSON"

    def bad_instant(f: Format) -> str:
        return " OR ".join(r.bad_instant(k) for k in f.unused_instants) or "false"

    calls = f"""
        SELECT
            __fmt,
            {_by_format(formats, lambda f: r.text(f.message_id))} AS __message_id,
            {_call_type_sql(r.text("type"))} AS __sent_type,
            {r.text("event")} AS __kind,
            {r.text("event_name")} AS __event_name,
            {r.text("name")} AS __name,
            {unstruct} AS __unstruct,
            {_by_format(formats, lambda f: r.first(f.user_id))} AS __user_id,
            {_by_format(formats, lambda f: r.first(f.anonymous_id))} AS __anonymous_id,
            {_by_format(formats, account)} AS __account_id,
            {_by_format(formats, lambda f: r.first(f.timestamp))} AS __timestamp,
            {_by_format(formats, lambda f: r.first(f.received_at))} AS __received_at,
            {r.json("properties")} AS __properties,
            {r.text("previousId")} AS __previous_id,
            {_by_format(formats, traits)} AS __traits,
            {", ".join(f"{r.text(k)} AS __{k}" for k in snowplow_fields)},
            -- The instants the columns are taken from are judged once they are read (below).
            {_by_format(formats, bad_instant)} AS __bad_instant,
            {" OR ".join(problems) or "false"} AS __bad_value,
            {", ".join(passed) + "," if passed else ""}
            parse_filename(src.__path) AS __file
        FROM (SELECT *, {fmt} AS __fmt FROM src) AS src"""
    typed = f"""
        SELECT
            *,
            {_by_format(formats, lambda f: CALL_TYPE[f.name])} AS __type,
            {INSTANT.format(v="__timestamp")} AS __ts,
            {INSTANT.format(v="__received_at")} AS __rts
        FROM calls"""
    named = f"""
        SELECT *, {_by_format(formats, lambda f: CALL_EVENT[f.name])} AS __event
        FROM typed"""
    final = {
        "message_id": "__message_id",
        "type": "__type",
        "event": "__event",
        "user_id": "__user_id",
        "anonymous_id": "__anonymous_id",
        "account_id": "__account_id",
        "timestamp": "__ts",
        "received_at": "__rts",
        "properties": _by_format(formats, lambda f: CALL_PROPERTIES[f.name]),
        "traits": "__traits",
        "format": "__fmt",
    }
    rejected = f"""(__message_id IS NULL
            OR __fmt NOT IN ({", ".join(_sql_string(f.name) for f in formats)})
            OR __type IS NULL
            OR (__user_id IS NULL AND __anonymous_id IS NULL)
            OR (__type = 'track' AND __event IS NULL)
            OR __ts IS NULL OR (__received_at IS NOT NULL AND __rts IS NULL) OR __bad_instant OR __bad_value
            -- a self-describing event whose data is under a key not read: Python reads it
            OR (__fmt = 'snowplow' AND __kind = 'unstruct' AND __unstruct IS NULL))"""
    struct = "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(t)}" for k, t in r.types.items()) + "}"
    files = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
    source = (
        f"read_json({files}, format = 'newline_delimited', columns = {struct}, "
        f"ignore_errors = true, filename = '__path')"
    )
    outputs = [f"{expr} AS {_ident(name)}" for name, expr in final.items()]
    outputs += [f"__c{index} AS {_ident(name)}" for index, (name, *_) in enumerate(evolved)]
    outputs += ['__file AS "_file_name"', f'{rejected} AS "_rejected"']
    sql = (
        f"WITH src AS (SELECT * FROM {source}), calls AS ({calls}), typed AS ({typed}), named AS ({named}) "
        f"SELECT {', '.join(outputs)} FROM named"
    )
    if dedup_table:
        sql += (
            f" WHERE NOT EXISTS (SELECT 1 FROM {dedup_table} AS loaded "
            f"WHERE loaded.message_id = named.__message_id AND loaded._rejected IS NOT TRUE)"
        )
    return sql


# --- The Python path: the same rules, line by line ---------------------------------------------


class Instants:
    """Instant texts read as the SQL reads them: by DuckDB, with `INSTANT`, many at once."""

    def __init__(self):
        self._read: dict[str, datetime | None] = {}
        self._con = duckdb.connect()
        # As dlt's warehouse sessions: an instant without a zone is UTC.
        self._con.execute("SET TimeZone = 'UTC'")

    def learn(self, texts: Iterable[str]) -> None:
        new = sorted({t for t in texts if t not in self._read})
        if new:
            [(read,)] = self._con.execute(
                f"SELECT list_transform($1::VARCHAR[], lambda v: {INSTANT.format(v='v')})", [new]
            ).fetchall()
            self._read.update((t, None if r is None else r.astimezone(UTC)) for t, r in zip(new, read))

    def __call__(self, text: str) -> datetime | None:
        if text not in self._read:
            self.learn([text])
        return self._read[text]


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
    if kind == "page_view":
        page = _object({k: _text(record.get(v)) for k, v in PAGE_VIEW_KEYS.items()})
        return "page", page.get("title"), page
    if kind == "struct":
        struct = _object(
            {k: _text(record.get(k)) for k in STRUCT_KEYS[:-1]} | {"se_value": _number(record.get("se_value"))}
        )
        return "track", struct.get("se_action"), struct
    if kind == "unstruct":
        if _text(record.get("event_name")) == SCREEN_VIEW:
            name = _text(unstruct.get("name")) if isinstance(unstruct, dict) else None
            return "screen", name, unstruct
        return "track", _text(record.get("event_name")), unstruct
    return "track", kind, None


def _segment_call(record: dict) -> tuple[str | None, str | None, Any, Any]:
    """(type, event, properties, traits) of a Segment or RudderStack call."""
    context = record.get("context") if isinstance(record.get("context"), dict) else {}
    properties = record.get("properties")
    if properties is None and _text(record.get("previousId")) is not None:
        properties = {"previousId": _text(record.get("previousId"))}
    traits = record.get("traits") if record.get("traits") is not None else context.get("traits")
    return _sent_type(record), _first(record, ("event", "name")), properties, traits


def _sent_type(record: dict) -> str | None:
    # DuckDB's trim takes spaces only.
    return (_text(record.get("type")) or "").strip(" ").lower() or None


def _account(record: dict, f: Format, entity: AccountEntity) -> str | None:
    named = _first(record, f.account_id)
    if named is None and f is SEGMENT:
        context = record.get("context")
        named = _text(context.get("groupId")) if isinstance(context, dict) else None
    if named is None and f is SNOWPLOW:
        named = entity.of(record)
    return named


def _format(record: dict) -> Format | None:
    return next((f for key, f in FORMATS.items() if _text(record.get(key)) is not None), None)


def normalise(
    record: dict, entity: AccountEntity = AccountEntity(), instants: Instants | None = None
) -> tuple[dict | None, str | None]:
    """The contract's columns of one parsed line, or the reason it cannot be loaded."""
    instants = instants or Instants()
    f = _format(record)
    if f is None:
        return None, "missing required field(s): message_id"
    row = {
        "message_id": _text(record.get(f.message_id)),
        "user_id": _first(record, f.user_id),
        "anonymous_id": _first(record, f.anonymous_id),
        "account_id": _account(record, f, entity),
        "format": f.name,
    }
    if f is SNOWPLOW:
        row["type"], row["event"], row["properties"] = _snowplow_call(record)
        row["traits"] = None
    elif f is SEGMENT:
        row["type"], row["event"], row["properties"], row["traits"] = _segment_call(record)
    else:
        row["type"] = _sent_type(record) or "track"
        row["event"] = _text(record.get("event"))
        row["properties"], row["traits"] = record.get("properties"), record.get("traits")
    if row["type"] is None:
        return None, "missing required field(s): type"
    if row["user_id"] is None and row["anonymous_id"] is None:
        return None, "neither a user id nor an anonymous id"
    if row["type"] == "track" and row["event"] is None:
        return None, "missing required field(s): event"
    for key in f.instants:
        value = _text(record.get(key))
        if value is not None and instants(value) is None:
            return None, f"{key} is not an ISO 8601 timestamp: {record.get(key)!r}"
    for name, keys in (("timestamp", f.timestamp), ("received_at", f.received_at)):
        value = _first(record, keys)
        row[name] = instants(value) if value is not None else None
    if row["timestamp"] is None:
        return None, "missing required field(s): timestamp"
    for name in ("properties", "traits"):
        row[name] = None if row[name] is None else _json_text(row[name])
    return row, None


def normalise_lines(
    lines: Iterable[str], entity: AccountEntity = AccountEntity()
) -> list[tuple[dict | None, dict | None, str | None]]:
    """(the contract's columns, the parsed event, None) for each line that loads, (None, None,
    the reason) for each that does not; the lines' instants are read in one go."""
    parsed: list[tuple[dict | None, str | None]] = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            parsed.append((None, f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(record, dict):
            parsed.append((None, f"not a JSON object but {type(record).__name__}"))
            continue
        parsed.append((record, None))
    instants = Instants()
    instants.learn(
        t
        for record, _ in parsed
        if record is not None and (f := _format(record)) is not None
        for t in (_text(record.get(k)) for k in f.instants)
        if t is not None
    )
    out = []
    for record, reason in parsed:
        if reason:
            out.append((None, None, reason))
            continue
        row, reason = normalise(record, entity, instants)
        out.append((row, record if row else None, reason))
    return out


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


def read_file(
    path: Path, entity: AccountEntity = AccountEntity(), naming=None
) -> tuple[pa.Table | None, list[dict], list[dict]]:
    """Parse one collector file in Python: (the good events as Arrow, hints for its JSON columns,
    quarantine rows for the bad lines)."""
    naming = naming or dlt.Schema("usage_events").naming
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        numbered = [(n, line.rstrip("\n")) for n, line in enumerate(f, start=1) if line.strip()]
    good, bad = [], []
    for (number, line), (row, record, reason) in zip(numbered, normalise_lines((line for _, line in numbered), entity)):
        if reason:
            bad.append(quarantine.row(SOURCE, TABLE, reason, line, f"{path.name}:{number}"))
        else:
            good.append((row, record))
    if not good:
        return None, [], bad
    columns = {
        name: pa.array([row[name] for row, _ in good], CONTRACT.arrow_type(name))
        for name in CONTRACT.columns
        if name not in ("_file_name", "_rejected")
    }
    extras, hints = _extra_columns([record for _, record in good], naming)
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
            client.dataset_name,
            TABLE,
        )
        return client.make_qualified_table_name(TABLE) if rows else None


def _declared_columns_exist(pipeline: dlt.Pipeline) -> bool:
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return False
        rows = client.execute_sql(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
            client.dataset_name,
            TABLE,
        )
    return set(CONTRACT.columns) <= {r[0] for r in rows}


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
        table = table.rename_columns(
            [*table.column_names[:index], f"{field.name}__v_{have}", *table.column_names[index + 1 :]]
        )
    return table


def _columns_and_keys(
    schema_columns: dict[str, dict], state_keys: dict[str, str], sampled: dict[str, str], naming
) -> tuple[dict[str, dict], dict[str, str], list[dict]]:
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
def usage_events_source(
    landing_dir: str = dlt.config.value,
    recheck: tuple[str, ...] = (),
    account_entity: str = DEFAULT_ACCOUNT_ENTITY,
    account_field: str = DEFAULT_ACCOUNT_FIELD,
):
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
        # Unreadable files are set aside first, so they never stop the others (see Rejected).
        pending, sampled, _ = screen(pending_files(folder, set(state["loaded_files"])), folder)
        if not pending:
            # Staging reads every declared column: a warehouse that has never seen an event,
            # or holds the table from before a column was declared, gets them all.
            if not _declared_columns_exist(pipeline):
                yield CONTRACT.empty()
            return
        pending, resent = distinct_content(pending)
        schema = dlt.current.source_schema()
        columns, keys, new = _columns_and_keys(
            schema.tables.get(TABLE, {}).get("columns", {}), state.get("keys", {}), sampled, schema.naming
        )
        hints = dlt.mark.make_hints(columns=new) if new else None
        if _reads_files_itself(pipeline):
            query = native_query(pending, columns, keys, _existing_table(pipeline), entity, formats_in(sampled))
            model = Path(pipeline.working_dir) / f"usage_events_{uuid.uuid4().hex}.model"
            model.write_text(str(SqlModel.from_query_string(query, dialect="duckdb")))
            try:
                yield dlt.mark.with_file_import(str(model), "model", hints=hints)
            finally:
                model.unlink(missing_ok=True)
        else:
            # A server warehouse cannot read the landing folder (see Speed).
            query = native_query(pending, columns, keys, None, entity, formats_in(sampled))
            yield from _read_beside(query, pipeline, hints)
        state["loaded_files"].extend(sorted([p.name for p in pending] + list(resent)))
        state["keys"] = keys

    return events


def _reads_files_itself(pipeline: dlt.Pipeline) -> bool:
    """Whether the warehouse is DuckDB, which reads the landing files inside the load; on
    PostgreSQL the same query runs in a DuckDB of the loading process (`_read_beside`)."""
    return "duckdb" in pipeline.destination.destination_type


# Rows the in-memory DuckDB hands the load at a time on a server warehouse (`_read_beside`):
# memory stays bounded whatever the batch of files holds.
_BATCH_ROWS = 100_000


def _read_beside(query: str, pipeline: dlt.Pipeline, hints):
    """The fast path for a warehouse that cannot read the landing folder (PostgreSQL): the same
    query run by an in-memory DuckDB beside the load, its rows handed to dlt as Arrow, less the
    events the warehouse already holds (what the query's own NOT EXISTS does on DuckDB). Flagged
    rows load flagged, and `settle` takes them through the Python path, as on DuckDB."""
    table_name = _existing_table(pipeline)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # as dlt's warehouse sessions: a naive instant is UTC
        for batch in con.sql(query).to_arrow_reader(_BATCH_ROWS):
            table = CONTRACT.conform(pa.Table.from_batches([batch]))
            if table_name and table.num_rows:
                ids = [i for i in table.column("message_id").to_pylist() if i is not None]
                with pipeline.sql_client() as client:
                    loaded = [r[0] for r in client.execute_sql(_loaded_ids_sql(table_name, False), ids)]
                if loaded:
                    table = table.filter(pc.invert(pc.is_in(table.column("message_id"), pa.array(loaded, pa.string()))))
            if table.num_rows:
                yield dlt.mark.with_hints(table, hints) if hints else table


def _loaded_ids_sql(table_name: str, duckdb: bool) -> str:
    matches = "list_contains(%s, message_id)" if duckdb else "message_id = any(%s)"
    return f"select message_id from {table_name} where _rejected is not true and {matches}"


def _first_seen(table: pa.Table, seen: set[str]) -> pa.Table:
    """The events whose message id is not in `seen` (nor earlier in the table); adds them to it."""
    keep = []
    for message_id in table.column("message_id").to_pylist():
        keep.append(message_id not in seen)
        seen.add(message_id)
    return table if all(keep) else table.filter(pa.array(keep, pa.bool_()))


def _reread(folder: Path, names: Iterable[str], pipeline: dlt.Pipeline, entity: AccountEntity):
    """Read files in Python: the bad lines to quarantine, and the events the SQL could not load.
    An event already loaded, or met in an earlier file of the same batch, is skipped."""
    table_name = _existing_table(pipeline)
    schema = dlt.current.source_schema()
    duckdb_sql = _reads_files_itself(pipeline)
    seen: set[str] = set()
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"usage_events: {path} was loaded with rejected lines and is needed again to "
                "quarantine them; put it back in the landing folder"
            )
        table, hints, bad = read_file(path, entity, schema.naming)
        if table is not None and table_name:
            with pipeline.sql_client() as client:
                ids = table.column("message_id").to_pylist()
                rows = client.execute_sql(_loaded_ids_sql(table_name, duckdb_sql), ids)
            seen.update(r[0] for r in rows)
        if table is not None:
            table = _first_seen(table, seen)
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
