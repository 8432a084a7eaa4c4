"""Usage events as real collectors send them: the payloads Segment, RudderStack and Snowplow
document (tests/fixtures/events) go through the real usage connector into a real DuckDB file,
land normalised in raw_usage.events, and reach marts.usage_events with their customer."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from connectors.pipelines import load
from connectors.usage_events import read_file
from data_spine.config import settings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "events"
DAY_FILE = "events_2026-11-20.jsonl.gz"


def _payloads() -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*/*.json"))}


def _line(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _drop(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _settings(root: Path):
    return dataclasses.replace(settings(), data_dir=root, warehouse=root / "warehouse.duckdb")


def _query(cfg, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _quarantined(cfg) -> list[tuple]:
    """(location, reason) of each quarantined line; the table exists once a line was."""
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        if not con.execute("select 1 from duckdb_tables() where schema_name = 'raw_usage' and table_name = 'quarantine'").fetchall():
            return []
        return con.execute("select location, reason from raw_usage.quarantine order by location").fetchall()


def _load_usage(cfg, **config):
    return load("usage_events", cfg, landing_dir=str(cfg.data_dir / "landing"), **config)


# payload -> (type, event, user_id, anonymous_id, account_id, timestamp, received_at)
RAW = {
    "segment/track": ("track", "Course Clicked", "AiUGstSDIg", "23adfd82-aa0f-45a7-a756-24f2a7a4c895", "acct_123",
                      "2015-12-12T19:11:01.249", "2015-12-12T19:11:01.266"),
    "segment/identify": ("identify", None, "97980cfea0067", "507f191e810c19729de860ea", None,
                         "2015-02-23T22:28:55.111", "2015-02-23T22:28:55.387"),
    "segment/group": ("group", None, "97980cfea0067", "507f191e810c19729de860ea", "0e8c78ea9d97a7b8185e8632",
                      "2015-02-23T22:28:55.111", "2015-02-23T22:28:55.387"),
    "segment/page": ("page", "Home", "97980cfea0067", "507f191e810c19729de860ea", None,
                     "2015-02-23T22:28:55.111", "2015-02-23T22:28:55.387"),
    "segment/screen": ("screen", "Home", "97980cfea0067", "3a12eab0-bca7-11e4-8dfc-aa07a5b093db", None,
                       "2015-02-23T22:28:55.111", "2015-02-23T22:28:55.387"),
    "segment/alias": ("alias", None, "507f191e81", "507f191e810c19729de860ea", None,
                      "2015-02-23T22:28:55.111", "2015-02-23T22:28:55.387"),
    # RudderStack's sample has no `timestamp`: its originalTimestamp stands in.
    "rudderstack/track": ("track", "Product Reviewed", None, "7e32188a4dab669f", None,
                          "2020-01-09T10:01:53.558", "2020-01-09T10:02:03.412"),
    "rudderstack/identify": ("identify", None, "hashed_user_id", "7e32188a4dab669f", None,
                             "2020-01-09T10:01:53.558", "2020-01-09T10:02:03.412"),
    "rudderstack/group": ("group", None, None, "7e32188a4dab669f", "12345",
                          "2020-01-09T10:01:53.558", "2020-01-09T10:02:03.412"),
    "rudderstack/page": ("page", "Home", None, "7e32188a4dab669f", None,
                         "2020-01-09T10:01:53.558", "2020-01-09T10:02:03.412"),
    # Snowplow: derived_tstamp, else dvce_created_tstamp, else collector_tstamp.
    "snowplow/page_view": ("page", "On Analytics", "jon.doe@email.com", "bc2e92ec6c204a14", "ws_100042",
                           "2013-11-26T00:03:57.886", "2013-11-26T00:02:05"),
    "snowplow/link_click": ("track", "link_click", "jon.doe@email.com", "bc2e92ec6c204a14", "ws_100042",
                            "2013-11-26T00:04:10.203", "2013-11-26T00:04:12"),
    "snowplow/struct": ("track", "app.viewed.dashboard", None, "d41d8cd98f00b204", "ws_100042",
                        "2013-11-26T00:07:31", "2013-11-26T00:07:31"),
}
PROPERTIES = {
    "segment/track": {"title": "Intro to Analytics"},
    "segment/alias": {"previousId": "39239-239239-239239-23923"},
    "snowplow/page_view": {"url": "http://www.snowplowanalytics.com", "title": "On Analytics"},
    "snowplow/link_click": {"targetUrl": "http://www.example.com", "elementClasses": ["foreground"],
                            "elementId": "exampleLink"},
    "snowplow/struct": {"se_category": "app", "se_action": "app.viewed.dashboard", "se_label": "growth", "se_value": 1.0},
}
TRAITS = {
    "segment/identify": {"name": "Peter Gibbons", "email": "peter@example.com"},
    "segment/group": {"name": "Initech", "website": "https://www.Initech.com/about"},
    "rudderstack/track": {"anonymousId": "7e32188a4dab669f"},
    "rudderstack/group": {"name": "MyGroup", "plan": "basic"},
}


def _message_id(payload: dict) -> str:
    return payload.get("messageId") or payload["event_id"]


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=None).isoformat(timespec="milliseconds").removesuffix(".000")


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """Every documented payload in one landing file, loaded by the real connector."""
    cfg = _settings(tmp_path_factory.mktemp("formats"))
    path = _drop(cfg.data_dir / "landing", DAY_FILE, [_line(p) for p in _payloads().values()])
    _load_usage(cfg)
    return cfg, path


def _raw(cfg) -> dict[str, dict]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        cursor = con.execute("select * from raw_usage.events")
        names = [d[0] for d in cursor.description]
        return {r["message_id"]: r for r in (dict(zip(names, row)) for row in cursor.fetchall())}


def test_each_documented_payload_lands_normalised(landed):
    cfg, _ = landed
    raw = _raw(cfg)
    payloads = _payloads()
    assert set(payloads) == set(RAW), "every fixture has its expectation"
    assert _quarantined(cfg) == []
    for name, payload in payloads.items():
        row = raw[_message_id(payload)]
        got = (row["type"], row["event"], row["user_id"], row["anonymous_id"], row["account_id"],
               _instant(row["timestamp"]), _instant(row["received_at"]))
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
    assert raw["1578564113557-af022c68-429e-4af4-b99b-2b9174056383"]["rudder_id"] == "2e69b7d1-5ee0-4e0e-a5b6-4e3ad1a9e1a2"
    assert json.loads(raw["ajs-f8ca1e4de5024d9430b3928bd8ac6b96"]["context"])["groupId"] == "acct_123"


def test_the_python_path_normalises_each_payload_as_the_sql_does(landed):
    """`settle` re-reads files in Python: it must land each call exactly as the SQL did."""
    cfg, path = landed
    table, _, bad = read_file(path)
    assert bad == []
    columns = ("message_id", "type", "event", "user_id", "anonymous_id", "account_id", "timestamp", "received_at",
               "format")
    python = {r["message_id"]: r for r in table.to_pylist()}
    for message_id, row in _raw(cfg).items():
        assert {c: python[message_id][c] for c in columns} == {c: row[c] for c in columns}, message_id
        for c in ("properties", "traits"):
            parsed = [None if v is None else json.loads(v) for v in (python[message_id][c], row[c])]
            assert parsed[0] == parsed[1], (message_id, c)


def test_invalid_lines_are_quarantined_with_their_reason_and_the_rest_loads(tmp_path):
    cfg = _settings(tmp_path)
    track = _payloads()["segment/track"]
    anonymous = {k: v for k, v in track.items() if k not in ("userId", "anonymousId")} | {"messageId": "ajs-nobody"}
    # Segment's own docs print this month unpadded; the instant is unambiguous, so it is read.
    unpadded = track | {"messageId": "ajs-unpadded", "timestamp": "2015-2-02T00:30:08.276Z"}
    bad_time = track | {"messageId": "ajs-bad-time", "originalTimestamp": "12/12/2015 19:11"}
    no_event = track | {"messageId": "ajs-no-event", "event": ""}
    _drop(cfg.data_dir / "landing", DAY_FILE, [
        _line(track), _line(anonymous), '{"messageId": "ajs-cut", "type": "tra', _line(unpadded), _line(bad_time),
        _line(no_event), _line(_payloads()["snowplow/struct"]),
    ])
    _load_usage(cfg)
    assert _query(cfg, "select message_id, timestamp::varchar from raw_usage.events order by 1") == [
        ("9a1f3e52-7c44-4f0e-8d2b-3b6e1f0c9d8a", "2013-11-26 00:07:31+00"),
        ("ajs-f8ca1e4de5024d9430b3928bd8ac6b96", "2015-12-12 19:11:01.249+00"),
        ("ajs-unpadded", "2015-02-02 00:30:08.276+00"),
    ]
    assert _quarantined(cfg) == [
        (f"{DAY_FILE}:2", "neither a user id nor an anonymous id"),
        (f"{DAY_FILE}:3", "not valid JSON: Unterminated string starting at at column 34"),
        (f"{DAY_FILE}:5", "originalTimestamp is not an ISO 8601 timestamp: '12/12/2015 19:11'"),
        (f"{DAY_FILE}:6", "missing required field(s): event"),
    ]
    assert _query(cfg, "select count(*) from raw_usage.events where _rejected is not false") == [(0,)]


def test_the_snowplow_account_entity_is_configuration(tmp_path, monkeypatch):
    cfg = _settings(tmp_path)
    event = _payloads()["snowplow/struct"]
    event = {k: v for k, v in event.items() if k != "contexts_io_dataspine_workspace_1"}
    event["contexts_com_acme_account_1"] = [{"account_id": "acme-7", "tier": "gold"}]
    _drop(cfg.data_dir / "landing", DAY_FILE, [_line(event)])
    monkeypatch.setenv("SOURCES__USAGE_EVENTS__ACCOUNT_ENTITY", "contexts_com_acme_account_1")
    monkeypatch.setenv("SOURCES__USAGE_EVENTS__ACCOUNT_FIELD", "account_id")
    _load_usage(cfg)
    assert _query(cfg, "select message_id, account_id from raw_usage.events") == [(event["event_id"], "acme-7")]


def test_a_self_describing_event_first_seen_deep_in_a_file_is_loaded_whole(tmp_path):
    """Keys are sampled from the top of a file; an event whose data key is not read is
    re-read in Python, not loaded without its data."""
    cfg = _settings(tmp_path)
    struct = _payloads()["snowplow/struct"]
    filler = [_line(struct | {"event_id": f"filler-{i:03d}"}) for i in range(120)]
    click = _payloads()["snowplow/link_click"]
    _drop(cfg.data_dir / "landing", DAY_FILE, [*filler, _line(click)])
    _load_usage(cfg)
    [(properties, data)] = _query(
        cfg, "select properties, unstruct_event_com_snowplowanalytics_snowplow_link_click_1 from raw_usage.events "
             "where message_id = ?", [click["event_id"]])
    assert json.loads(properties) == json.loads(data) == click["unstruct_event_com_snowplowanalytics_snowplow_link_click_1"]
    assert _query(cfg, "select count(*), count(*) filter (where _rejected is not false) from raw_usage.events") == [(121, 0)]
    assert _quarantined(cfg) == []
