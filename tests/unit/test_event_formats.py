"""Usage events as real collectors send them: the payloads Segment, RudderStack and Snowplow
document (tests/fixtures/events) go through the real usage connector into a real DuckDB file,
land normalised in raw_usage_events.events, and reach marts.usage_events with their customer."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from dbt_runs import passed, run_dbt

from connectors import contract
from connectors.pipelines import load
from connectors.usage_events import normalise_lines, read_file
from data_spine.settings import settings
from expectations.suites.common import EVENT_NAME_REGEX
from sample_company.generate import generate
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
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
        if not con.execute(
            "select 1 from duckdb_tables() where schema_name = 'raw_usage_events' and table_name = 'quarantine'"
        ).fetchall():
            return []
        return con.execute("select location, reason from raw_usage_events.quarantine order by location").fetchall()


def _load_usage(cfg, **config):
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
        cursor = con.execute("select * from raw_usage_events.events")
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
    cfg = _settings(tmp_path)
    track = _payloads()["segment/track"]
    anonymous = {k: v for k, v in track.items() if k not in ("userId", "anonymousId")} | {"messageId": "ajs-nobody"}
    # Segment's own docs print this month unpadded; the instant is unambiguous, so it is read.
    unpadded = track | {"messageId": "ajs-unpadded", "timestamp": "2015-2-02T00:30:08.276Z"}
    bad_time = track | {"messageId": "ajs-bad-time", "originalTimestamp": "12/12/2015 19:11"}
    no_event = track | {"messageId": "ajs-no-event", "event": ""}
    # DuckDB reads `epoch` as an instant; it names none.
    epoch = track | {"messageId": "ajs-epoch", "receivedAt": "epoch"}
    _drop(
        cfg.data_dir / "landing",
        DAY_FILE,
        [
            _line(track),
            _line(anonymous),
            '{"messageId": "ajs-cut", "type": "tra',
            _line(unpadded),
            _line(bad_time),
            _line(no_event),
            _line(_payloads()["snowplow/struct"]),
            _line(epoch),
        ],
    )
    _load_usage(cfg)
    assert _query(cfg, "select message_id, timestamp::varchar from raw_usage_events.events order by 1") == [
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
    assert _query(cfg, "select count(*) from raw_usage_events.events where _rejected is not false") == [(0,)]


def test_a_warehouse_without_events_still_has_every_declared_column(tmp_path):
    """Staging reads every column of the contract, also before the first file has landed."""
    cfg = _settings(tmp_path)
    (cfg.data_dir / "landing").mkdir()
    _load_usage(cfg)
    declared = set(contract.table("usage_events", "events").columns)
    columns = {
        r[0]
        for r in _query(
            cfg,
            "select column_name from information_schema.columns "
            "where table_schema = 'raw_usage_events' and table_name = 'events'",
        )
    }
    assert declared <= columns
    assert _query(cfg, "select count(*) from raw_usage_events.events") == [(0,)]


def test_the_snowplow_account_entity_is_configuration(tmp_path, monkeypatch):
    cfg = _settings(tmp_path)
    event = _payloads()["snowplow/struct"]
    event = {k: v for k, v in event.items() if k != "contexts_io_dataspine_workspace_1"}
    event["contexts_com_acme_account_1"] = [{"account_id": "acme-7", "tier": "gold"}]
    _drop(cfg.data_dir / "landing", DAY_FILE, [_line(event)])
    monkeypatch.setenv("SOURCES__USAGE_EVENTS__ACCOUNT_ENTITY", "contexts_com_acme_account_1")
    monkeypatch.setenv("SOURCES__USAGE_EVENTS__ACCOUNT_FIELD", "account_id")
    _load_usage(cfg)
    assert _query(cfg, "select message_id, account_id from raw_usage_events.events") == [(event["event_id"], "acme-7")]


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
    assert _query(
        cfg, "select count(*), count(*) filter (where _rejected is not false) from raw_usage_events.events"
    ) == [(121, 0)]
    assert _quarantined(cfg) == []


# --- Through dbt: every payload reaches marts.usage_events with its customer ------------------

# A minimal CRM: one HubSpot company per account the payloads name (by product_workspace_id),
# no billing, no support. The objects the local vendor APIs serve, each an empty list but these.
CRM = {
    "hubspot:1": ("Initech", "initech.com", "0e8c78ea9d97a7b8185e8632"),  # Segment's group example
    "hubspot:2": ("Globex", "globex.com", "acct_123"),  # the B2B spec's context.groupId
    "hubspot:3": ("MyGroup", "mygroup.io", "12345"),  # RudderStack's group example
    "hubspot:4": ("Snowplow Demo", "snowplow-demo.com", "ws_100042"),  # the Snowplow workspace entity
}
VENDOR_OBJECTS = {
    "hubspot": ("companies", "contacts", "deals"),
    "stripe": (
        "customers",
        "products",
        "prices",
        "subscriptions",
        "invoices",
        "charges",
        "refunds",
        "coupons",
        "discounts",
        "invoice_payments",
    ),
    "zendesk": ("organizations", "users", "tickets", "ticket_metrics", "satisfaction_ratings"),
}
CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
}
# payload -> (customer, where its workspace came from)
CUSTOMERS = {
    "segment/track": ("hubspot:2", "event"),
    "segment/identify": ("hubspot:1", "user"),  # the user's group call
    "segment/group": ("hubspot:1", "event"),
    "segment/page": ("hubspot:1", "user"),
    "segment/screen": ("hubspot:1", "user"),
    "segment/alias": ("hubspot:1", "anonymous_id"),  # a new user id, on the grouped device
    "rudderstack/track": ("hubspot:3", "anonymous_id"),
    "rudderstack/identify": ("hubspot:3", "anonymous_id"),
    "rudderstack/group": ("hubspot:3", "event"),
    "rudderstack/page": ("hubspot:3", "anonymous_id"),
    "snowplow/page_view": ("hubspot:4", "event"),
    "snowplow/link_click": ("hubspot:4", "event"),
    "snowplow/struct": ("hubspot:4", "event"),
}


def _crm_sources(folder: Path) -> Path:
    for system, objects in VENDOR_OBJECTS.items():
        (folder / system).mkdir(parents=True)
        for obj in objects:
            (folder / system / f"{obj}.jsonl").write_text("")
    created = "2013-01-01T00:00:00.000Z"
    companies = [
        {
            "id": customer.split(":")[1],
            "createdAt": created,
            "updatedAt": created,
            "archived": False,
            "properties": {
                "name": name,
                "domain": domain,
                "product_workspace_id": workspace,
                "createdate": created,
                "hs_lastmodifieddate": created,
                "hs_object_id": customer.split(":")[1],
            },
        }
        for customer, (name, domain, workspace) in CRM.items()
    ]
    (folder / "hubspot" / "companies.jsonl").write_text("".join(json.dumps(c) + "\n" for c in companies))
    return folder


@pytest.fixture(scope="module")
def built(landed, tmp_path_factory):
    """The landed payloads and the minimal CRM, built by dbt up to the usage marts."""
    cfg, _ = landed
    root = tmp_path_factory.mktemp("crm")
    with VendorApiServer(_crm_sources(root / "sources")) as api:
        for system in VENDOR_OBJECTS:
            load(system, cfg, base_url=api.base_url(system), **CREDENTIALS[system])
    # Tests of the selected models that reach models outside the selection are left out.
    result = run_dbt(
        ["build", "--select", "+usage_events", "+int_usage_accounts", "--indirect-selection", "cautious"],
        cfg.warehouse,
        root / "target",
    )
    assert passed(result), result.stdout[-4000:]
    return cfg


def test_every_payload_reaches_the_usage_events_mart_with_its_customer(built):
    rows = {
        r[0]: r[1:]
        for r in _query(
            built, "select event_id, customer_id, workspace_source, event_type, event_name from marts.usage_events"
        )
    }
    for name, payload in _payloads().items():
        customer, source = CUSTOMERS[name]
        call, event = RAW[name][:2]
        assert rows[_message_id(payload)] == (customer, source, call, event.lower() if event else None), name
    assert len(rows) == len(CUSTOMERS)


def test_usage_measures_count_product_events_only(built):
    # Segment's user 97980cfea0067 made an identify, a group, a page and a screen call that day.
    assert _query(
        built,
        "select workspace_id, user_id, activity_date::varchar, events from intermediate.int_usage_user_days "
        "order by all",
    ) == [
        ("0e8c78ea9d97a7b8185e8632", "97980cfea0067", "2015-02-23", 2),
        ("acct_123", "AiUGstSDIg", "2015-12-12", 1),
        ("ws_100042", "jon.doe@email.com", "2013-11-26", 2),
    ]


def test_group_traits_name_each_account_and_its_domain(built):
    assert _query(
        built,
        "select account_id, account_name, account_domain, first_seen_at::varchar, group_calls "
        "from intermediate.int_usage_accounts order by all",
    ) == [
        ("0e8c78ea9d97a7b8185e8632", "Initech", "initech.com", "2015-02-23 22:28:55.111", 1),
        ("12345", "MyGroup", None, "2020-01-09 10:01:53.558", 1),
    ]


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
    assert _query(
        cfg,
        "select count(*), count(*) filter (where _rejected is not false), count(distinct format) "
        "from raw_usage_events.events",
    ) == [(manifest["counts"]["usage"]["events"], 0, 1)]
    assert _quarantined(cfg) == []
    # Nothing was flagged, so nothing went through Python.
    assert info.pipeline.last_trace.last_normalize_info.row_counts.get("events", 0) <= 1
