"""The collectors' documented payloads (tests/fixtures/events), as the event-format tests land
them: one landing file through the real usage connector into a DuckDB file of their own."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import duckdb

from connectors.pipelines import load
from data_spine.settings import settings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "events"
DAY_FILE = "events_2026-11-20.jsonl.gz"


def payloads() -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*/*.json"))}


def line(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


def drop(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def settings_in(root: Path):
    return dataclasses.replace(settings(), data_dir=root, warehouse=root / "warehouse.duckdb")


def query(cfg, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def load_usage(cfg, **config):
    return load("usage_events", cfg, landing_dir=str(cfg.data_dir / "landing"), **config)


# payload -> (type, event, user_id, anonymous_id, account_id, timestamp, received_at)
RAW = {
    "segment/track": (
        "track",
        "Course Clicked",
        "AiUGstSDIg",
        "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "acct_123",
        "2015-12-12T19:11:01.249",
        "2015-12-12T19:11:01.266",
    ),
    "segment/identify": (
        "identify",
        None,
        "97980cfea0067",
        "507f191e810c19729de860ea",
        None,
        "2015-02-23T22:28:55.111",
        "2015-02-23T22:28:55.387",
    ),
    "segment/group": (
        "group",
        None,
        "97980cfea0067",
        "507f191e810c19729de860ea",
        "0e8c78ea9d97a7b8185e8632",
        "2015-02-23T22:28:55.111",
        "2015-02-23T22:28:55.387",
    ),
    "segment/page": (
        "page",
        "Home",
        "97980cfea0067",
        "507f191e810c19729de860ea",
        None,
        "2015-02-23T22:28:55.111",
        "2015-02-23T22:28:55.387",
    ),
    "segment/screen": (
        "screen",
        "Home",
        "97980cfea0067",
        "3a12eab0-bca7-11e4-8dfc-aa07a5b093db",
        None,
        "2015-02-23T22:28:55.111",
        "2015-02-23T22:28:55.387",
    ),
    "segment/alias": (
        "alias",
        None,
        "507f191e81",
        "507f191e810c19729de860ea",
        None,
        "2015-02-23T22:28:55.111",
        "2015-02-23T22:28:55.387",
    ),
    # RudderStack's sample has no `timestamp`: its originalTimestamp stands in.
    "rudderstack/track": (
        "track",
        "Product Reviewed",
        None,
        "7e32188a4dab669f",
        None,
        "2020-01-09T10:01:53.558",
        "2020-01-09T10:02:03.412",
    ),
    "rudderstack/identify": (
        "identify",
        None,
        "hashed_user_id",
        "7e32188a4dab669f",
        None,
        "2020-01-09T10:01:53.558",
        "2020-01-09T10:02:03.412",
    ),
    "rudderstack/group": (
        "group",
        None,
        None,
        "7e32188a4dab669f",
        "12345",
        "2020-01-09T10:01:53.558",
        "2020-01-09T10:02:03.412",
    ),
    "rudderstack/page": (
        "page",
        "Home",
        None,
        "7e32188a4dab669f",
        None,
        "2020-01-09T10:01:53.558",
        "2020-01-09T10:02:03.412",
    ),
    # Snowplow: derived_tstamp, else dvce_created_tstamp, else collector_tstamp.
    "snowplow/page_view": (
        "page",
        "On Analytics",
        "jon.doe@email.com",
        "bc2e92ec6c204a14",
        "ws_100042",
        "2013-11-26T00:03:57.886",
        "2013-11-26T00:02:05",
    ),
    "snowplow/link_click": (
        "track",
        "link_click",
        "jon.doe@email.com",
        "bc2e92ec6c204a14",
        "ws_100042",
        "2013-11-26T00:04:10.203",
        "2013-11-26T00:04:12",
    ),
    "snowplow/struct": (
        "track",
        "app.viewed.dashboard",
        None,
        "d41d8cd98f00b204",
        "ws_100042",
        "2013-11-26T00:07:31",
        "2013-11-26T00:07:31",
    ),
}


def message_id(payload: dict) -> str:
    return payload.get("messageId") or payload["event_id"]


def land(root: Path):
    """Every documented payload in one landing file under `root`, loaded by the real connector;
    returns the settings of that warehouse and the file."""
    cfg = settings_in(root)
    path = drop(cfg.data_dir / "landing", DAY_FILE, [line(p) for p in payloads().values()])
    load_usage(cfg)
    return cfg, path
