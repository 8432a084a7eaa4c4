"""Usage events as real collectors send them: the payloads Segment, RudderStack and Snowplow
document (tests/fixtures/events) go through the real usage connector into a real DuckDB file,
land normalised in raw_usage_events.events (their way on to the usage marts, built by dbt, is
tests/integration/test_event_marts.py)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import event_payloads as documented
import pytest
from event_payloads import DAY_FILE, RAW

from connectors import contract
from connectors.pipelines import load
from connectors.usage_events import normalise_lines, read_file
from data_spine.settings import settings
from expectations.suites.common import EVENT_NAME_REGEX
from sample_company.generate import generate


def _quarantined(cfg) -> list[tuple]:
    """(location, reason) of each quarantined line; the table exists once a line was."""
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        if not con.execute(
            "select 1 from duckdb_tables() where schema_name = 'raw_usage_events' and table_name = 'quarantine'"
        ).fetchall():
            return []
        return con.execute("select location, reason from raw_usage_events.quarantine order by location").fetchall()


PROPERTIES = {
    "segment/track": {"title": "Intro to Analytics"},
    "segment/alias": {"previousId": "39239-239239-239239-23923"},
    "snowplow/page_view": {"url": "http://www.snowplowanalytics.com", "title": "On Analytics"},
    "snowplow/link_click": {
        "targetUrl": "http://www.example.com",
        "elementClasses": ["foreground"],
        "elementId": "exampleLink",
    },
    "snowplow/struct": {
        "se_category": "app",
        "se_action": "app.viewed.dashboard",
        "se_label": "growth",
        "se_value": 1.0,
    },
}
TRAITS = {
    "segment/identify": {"name": "Peter Gibbons", "email": "peter@example.com"},
    "segment/group": {"name": "Initech", "website": "https://www.Initech.com/about"},
    "rudderstack/track": {"anonymousId": "7e32188a4dab669f"},
    "rudderstack/group": {"name": "MyGroup", "plan": "basic"},
}


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=None).isoformat(timespec="milliseconds").removesuffix(".000")


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """Every documented payload in one landing file, loaded by the real connector."""
    return documented.land(tmp_path_factory.mktemp("formats"))


def _raw(cfg) -> dict[str, dict]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        cursor = con.execute("select * from raw_usage_events.events")
        names = [d[0] for d in cursor.description]
        return {r["message_id"]: r for r in (dict(zip(names, row)) for row in cursor.fetchall())}


def test_each_documented_payload_lands_normalised(landed):
    cfg, _ = landed
    raw = _raw(cfg)
    payloads = documented.payloads()
    assert set(payloads) == set(RAW), "every fixture has its expectation"
    assert _quarantined(cfg) == []
    for name, payload in payloads.items():
        row = raw[documented.message_id(payload)]
        got = (
            row["type"],
            row["event"],
            row["user_id"],
            row["anonymous_id"],
            row["account_id"],
            _instant(row["timestamp"]),
            _instant(row["received_at"]),
        )
        assert got == RAW[name], name
        assert row["format"] == name.split("/")[0].replace("rudderstack", "segment"), name
        assert row["_rejected"] is False
        properties = json.loads(row["properties"]) if row["properties"] else None
        assert properties == PROPERTIES.get(name, payload.get("properties")), name
        traits = json.loads(row["traits"]) if row["traits"] else {}
        assert TRAITS.get(name, {}).items() <= traits.items(), name
    # RudderStack's rudderId is a hash of the two ids, never taken for one.
    assert not {r["anonymous_id"] for r in raw.values()} & {p.get("rudderId") for p in payloads.values()}


def test_every_key_outside_the_contract_is_kept_in_a_column_of_its_own(landed):
    cfg, _ = landed
    raw = _raw(cfg)
    page_view = raw["c6ef3124-b53a-4b13-a233-0088f79dcbcb"]
    assert json.loads(page_view["contexts_io_dataspine_workspace_1"]) == [{"id": "ws_100042"}]
    assert page_view["collector_tstamp"] == "2013-11-26T00:02:05Z" and page_view["txn_id"] == 41828
    assert (
        raw["1578564113557-af022c68-429e-4af4-b99b-2b9174056383"]["rudder_id"] == "2e69b7d1-5ee0-4e0e-a5b6-4e3ad1a9e1a2"
    )
    assert json.loads(raw["ajs-f8ca1e4de5024d9430b3928bd8ac6b96"]["context"])["groupId"] == "acct_123"


def test_the_python_path_normalises_each_payload_as_the_sql_does(landed):
    """`settle` re-reads files in Python: it must land each call exactly as the SQL did."""
    cfg, path = landed
    table, _, bad = read_file(path)
    assert bad == []
    columns = (
        "message_id",
        "type",
        "event",
        "user_id",
        "anonymous_id",
        "account_id",
        "timestamp",
        "received_at",
        "format",
    )
    python = {r["message_id"]: r for r in table.to_pylist()}
    for message_id, row in _raw(cfg).items():
        assert {c: python[message_id][c] for c in columns} == {c: row[c] for c in columns}, message_id
        for c in ("properties", "traits"):
            parsed = [None if v is None else json.loads(v) for v in (python[message_id][c], row[c])]
            assert parsed[0] == parsed[1], (message_id, c)


def test_invalid_lines_are_quarantined_with_their_reason_and_the_rest_loads(tmp_path):
    cfg = documented.settings_in(tmp_path)
    track = documented.payloads()["segment/track"]
    anonymous = {k: v for k, v in track.items() if k not in ("userId", "anonymousId")} | {"messageId": "ajs-nobody"}
    # Segment's own docs print this month unpadded; the instant is unambiguous, so it is read.
    unpadded = track | {"messageId": "ajs-unpadded", "timestamp": "2015-2-02T00:30:08.276Z"}
    bad_time = track | {"messageId": "ajs-bad-time", "originalTimestamp": "12/12/2015 19:11"}
    no_event = track | {"messageId": "ajs-no-event", "event": ""}
    # DuckDB reads `epoch` as an instant; it names none.
    epoch = track | {"messageId": "ajs-epoch", "receivedAt": "epoch"}
    documented.drop(
        cfg.data_dir / "landing",
        DAY_FILE,
        [
            documented.line(track),
            documented.line(anonymous),
            '{"messageId": "ajs-cut", "type": "tra',
            documented.line(unpadded),
            documented.line(bad_time),
            documented.line(no_event),
            documented.line(documented.payloads()["snowplow/struct"]),
            documented.line(epoch),
        ],
    )
    documented.load_usage(cfg)
    assert documented.query(cfg, "select message_id, timestamp::varchar from raw_usage_events.events order by 1") == [
        ("9a1f3e52-7c44-4f0e-8d2b-3b6e1f0c9d8a", "2013-11-26 00:07:31+00"),
        ("ajs-f8ca1e4de5024d9430b3928bd8ac6b96", "2015-12-12 19:11:01.249+00"),
        ("ajs-unpadded", "2015-02-02 00:30:08.276+00"),
    ]
    assert _quarantined(cfg) == [
        (f"{DAY_FILE}:2", "neither a user id nor an anonymous id"),
        (f"{DAY_FILE}:3", "not valid JSON: Unterminated string starting at at column 34"),
        (f"{DAY_FILE}:5", "originalTimestamp is not an ISO 8601 timestamp: '12/12/2015 19:11'"),
        (f"{DAY_FILE}:6", "missing required field(s): event"),
        (f"{DAY_FILE}:8", "receivedAt is not an ISO 8601 timestamp: 'epoch'"),
    ]
    assert documented.query(cfg, "select count(*) from raw_usage_events.events where _rejected is not false") == [(0,)]


def test_a_warehouse_without_events_still_has_every_declared_column(tmp_path):
    """Staging reads every column of the contract, also before the first file has landed."""
    cfg = documented.settings_in(tmp_path)
    (cfg.data_dir / "landing").mkdir()
    documented.load_usage(cfg)
    declared = set(contract.table("usage_events", "events").columns)
    columns = {
        r[0]
        for r in documented.query(
            cfg,
            "select column_name from information_schema.columns "
            "where table_schema = 'raw_usage_events' and table_name = 'events'",
        )
    }
    assert declared <= columns
    assert documented.query(cfg, "select count(*) from raw_usage_events.events") == [(0,)]


def test_the_snowplow_account_entity_is_configuration(tmp_path, monkeypatch):
    cfg = documented.settings_in(tmp_path)
    event = documented.payloads()["snowplow/struct"]
    event = {k: v for k, v in event.items() if k != "contexts_io_dataspine_workspace_1"}
    event["contexts_com_acme_account_1"] = [{"account_id": "acme-7", "tier": "gold"}]
    documented.drop(cfg.data_dir / "landing", DAY_FILE, [documented.line(event)])
    monkeypatch.setenv("SOURCES__USAGE_EVENTS__ACCOUNT_ENTITY", "contexts_com_acme_account_1")
    monkeypatch.setenv("SOURCES__USAGE_EVENTS__ACCOUNT_FIELD", "account_id")
    documented.load_usage(cfg)
    assert documented.query(cfg, "select message_id, account_id from raw_usage_events.events") == [
        (event["event_id"], "acme-7")
    ]


def test_a_self_describing_event_first_seen_deep_in_a_file_is_loaded_whole(tmp_path):
    """Keys are sampled from the top of a file; an event whose data key is not read is
    re-read in Python, not loaded without its data."""
    cfg = documented.settings_in(tmp_path)
    struct = documented.payloads()["snowplow/struct"]
    filler = [documented.line(struct | {"event_id": f"filler-{i:03d}"}) for i in range(120)]
    click = documented.payloads()["snowplow/link_click"]
    documented.drop(cfg.data_dir / "landing", DAY_FILE, [*filler, documented.line(click)])
    documented.load_usage(cfg)
    [(properties, data)] = documented.query(
        cfg,
        "select properties, unstruct_event_com_snowplowanalytics_snowplow_link_click_1 from raw_usage_events.events "
        "where message_id = ?",
        [click["event_id"]],
    )
    assert (
        json.loads(properties)
        == json.loads(data)
        == click["unstruct_event_com_snowplowanalytics_snowplow_link_click_1"]
    )
    assert documented.query(
        cfg, "select count(*), count(*) filter (where _rejected is not false) from raw_usage_events.events"
    ) == [(121, 0)]
    assert _quarantined(cfg) == []


# --- Through dbt: every payload reaches marts.usage_events with its customer ------------------

# --- The sample company in each collector's format ---------------------------------------------

FORMATS = ("spine", "segment", "rudderstack", "snowplow")
AS_OF_DAY = date(2026, 11, 21)


def _generate(folder: Path, events: str) -> dict:
    return generate(
        folder / "sources",
        folder / "landing",
        preset="tiny",
        seed=7,
        as_of=AS_OF_DAY,
        variant=f"events={events}",
        log=lambda *_: None,
    )


@pytest.fixture(scope="module")
def companies(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The `tiny` company with its default defects, once per event format."""
    base = tmp_path_factory.mktemp("formats-company")
    return {f: (base / f, _generate(base / f, f)) for f in FORMATS}


def _lines(folder: Path) -> list[str]:
    return [
        line
        for p in sorted((folder / "landing").glob("*.jsonl.gz"))
        for line in gzip.decompress(p.read_bytes()).decode().splitlines()
    ]


def _calls(folder: Path) -> list[dict]:
    """Every line as the connector normalises it (its Python path), none of them refused."""
    lines = _lines(folder)
    calls = []
    for line, (row, _, reason) in zip(lines, normalise_lines(lines)):
        assert reason is None, (reason, line)
        calls.append(row)
    return calls


def _defects(calls: list[dict]) -> dict[str, set[str]]:
    """The usage defect classes, found as the quality checks find them."""
    as_of = datetime.combine(AS_OF_DAY, datetime.min.time(), UTC)
    found = {"malformed_event_name": set(), "late_event": set(), "future_timestamp": set()}
    for c in calls:
        if c["type"] == "track" and not re.fullmatch(EVENT_NAME_REGEX, c["event"]):
            found["malformed_event_name"].add(c["message_id"])
        if c["received_at"] - c["timestamp"] > timedelta(days=1):
            found["late_event"].add(c["message_id"])
        if c["timestamp"] > as_of:
            found["future_timestamp"].add(c["message_id"])
    return found


@pytest.mark.parametrize("events", FORMATS[1:])
def test_each_format_renders_the_same_events_with_their_defects(companies, events):
    folder, manifest = companies[events]
    spine = {c["message_id"]: c for c in _calls(companies["spine"][0])}
    calls = _calls(folder)
    assert len(calls) == manifest["counts"]["usage"]["events"], "the manifest counts the lines written"
    assert len({c["message_id"] for c in calls}) == len(calls)
    products = {c["message_id"]: c for c in calls if c["type"] == "track"}
    assert products.keys() == spine.keys(), "product events keep the simulated event ids"
    for message_id, call in products.items():
        # Spine writes whole seconds (`.000Z`); the other formats keep the milliseconds.
        same = [
            call["event"],
            call["user_id"],
            call["timestamp"].replace(microsecond=0),
            call["received_at"].replace(microsecond=0),
        ]
        theirs = spine[message_id]
        assert same == [theirs["event"], theirs["user_id"], theirs["timestamp"], theirs["received_at"]], message_id
    truth = {k: set(v) for k, v in manifest["defects"]["records"]["usage.events"].items()}
    assert _defects(calls) == truth and all(truth.values())

    accounts = {c["user_id"]: c["account_id"] for c in spine.values()}
    if events == "snowplow":
        assert all(c["account_id"] == accounts[c["user_id"]] for c in calls), "every event carries its workspace"
        return
    # One identify and one group call per user, naming the user's workspace; some track calls
    # leave it to them.
    by_type = {t: [c for c in calls if c["type"] == t] for t in ("identify", "group")}
    for call_type, made in by_type.items():
        assert sorted(c["user_id"] for c in made) == sorted(accounts), call_type
        assert all(c["account_id"] == accounts[c["user_id"]] for c in made), call_type
    assert all(json.loads(c["traits"])["email"].count("@") == 1 for c in by_type["identify"])
    assert all(json.loads(c["traits"])["website"].startswith("https://") for c in by_type["group"])
    unnamed = [c for c in products.values() if c["account_id"] is None]
    assert 0.15 < len(unnamed) / len(products) < 0.35
    assert all(c["account_id"] in (None, accounts[c["user_id"]]) for c in products.values())


@pytest.mark.parametrize("events", ["segment", "snowplow"])
def test_each_format_is_byte_identical_for_a_seed(companies, events, tmp_path):
    again = tmp_path / "again"
    _generate(again, events)
    assert _lines(again) == _lines(companies[events][0])


@pytest.mark.parametrize("events", FORMATS[1:])
def test_each_format_loads_whole_through_the_fast_path(companies, events, tmp_path):
    folder, manifest = companies[events]
    cfg = dataclasses.replace(settings(), data_dir=tmp_path, warehouse=tmp_path / "warehouse.duckdb")
    info = load("usage_events", cfg, landing_dir=str(folder / "landing"))
    assert documented.query(
        cfg,
        "select count(*), count(*) filter (where _rejected is not false), count(distinct format) "
        "from raw_usage_events.events",
    ) == [(manifest["counts"]["usage"]["events"], 0, 1)]
    assert _quarantined(cfg) == []
    # Nothing was flagged, so nothing went through Python.
    assert info.pipeline.last_trace.last_normalize_info.row_counts.get("events", 0) <= 1
