"""Each connector, run against the local vendor APIs, loads exactly what the source holds,
and rides out the faults real APIs show (rate limits, 5xx bursts, truncated bodies)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import multiprocessing
import shutil

import duckdb
import orjson
import pytest

from connectors.http import SourceRequestError
from connectors.pipelines import DATASETS, load, make_pipeline, make_source
from data_spine.settings import settings
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
    "usage_events": {},
}
# Raw tables per source and the manifest entry each must match.
EXPECTED = {
    "stripe": {
        t: ("stripe", t) for t in ("customers", "products", "prices", "subscriptions", "invoices", "charges", "refunds")
    }
    | {"subscriptions__items__data": ("stripe", "subscriptions"), "invoices__lines__data": ("stripe", "invoices")},
    "hubspot": {t: ("hubspot", t) for t in ("companies", "contacts", "deals")},
    "zendesk": {
        t: ("zendesk", t) for t in ("organizations", "users", "tickets", "ticket_metrics", "satisfaction_ratings")
    },
    "usage_events": {"events": ("usage", "events")},
}


API_SOURCES = ["stripe", "hubspot", "zendesk"]


@pytest.fixture(scope="module")
def api(small_company):
    with VendorApiServer(settings().sources_dir) as server:
        yield server


@pytest.fixture
def fresh(tmp_path, monkeypatch, api):
    """Settings with a private warehouse, fast retries, and a well-behaved API afterwards."""
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "4")
    cfg = dataclasses.replace(settings(), data_dir=tmp_path, warehouse=tmp_path / "warehouse.duckdb")
    yield cfg
    api.faults.clear()


def _source(source: str, api: VendorApiServer, **extra):
    overrides = dict(CREDENTIALS[source])
    if source != "usage_events":
        overrides["base_url"] = api.base_url(source)
    overrides.update(extra)
    return make_source(source, **overrides)


def _counts(schema: str, warehouse=None) -> dict[str, int]:
    with duckdb.connect(str(warehouse or settings().warehouse), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() "
                "where schema_name = ? and table_name not like '\\_dlt%' escape '\\'",
                [schema],
            ).fetchall()
        ]
        return {t: con.execute(f'select count(*) from "{schema}"."{t}"').fetchone()[0] for t in tables}


@pytest.mark.parametrize("source", list(DATASETS))
def test_connector_loads_every_record_once(source, api, small_company, fresh):
    # Into a warehouse of its own: the session's is the one the pipeline tests share.
    pipeline = make_pipeline(source, fresh)
    pipeline.run(_source(source, api))
    counts = _counts(DATASETS[source], fresh.warehouse)
    for table, (system, obj) in EXPECTED[source].items():
        assert counts.get(table) == small_company["counts"][system][obj], f"{source}.{table}"

    # A second run with no change in the source adds no row and extracts nothing at all:
    # every resource reads only what changed since its cursor.
    pipeline.run(_source(source, api))
    assert _counts(DATASETS[source], fresh.warehouse) == counts
    extracted = pipeline.last_trace.last_normalize_info.row_counts
    assert {t: n for t, n in extracted.items() if not t.startswith("_dlt") and n} == {}


def _load(source, api, cfg, **extra):
    overrides = dict(CREDENTIALS[source], base_url=api.base_url(source), **extra)
    return load(source, cfg, **overrides)


def _assert_exact_counts(source, cfg, manifest):
    counts = _counts(DATASETS[source], cfg.warehouse)
    for table, (system, obj) in EXPECTED[source].items():
        assert counts.get(table) == manifest["counts"][system][obj], f"{source}.{table}"


@pytest.mark.parametrize("source", API_SOURCES)
def test_rate_limit_waits_as_long_as_retry_after_says(source, api, fresh, small_company):
    api.faults.set(rate_limited=2, retry_after=1, vendor=source)
    start = len(api.log)
    _load(source, api, fresh)
    _assert_exact_counts(source, fresh, small_company)

    mine = [r for r in api.log[start:] if r.vendor == source]
    limited = [r for r in mine if r.status == 429]
    assert len(limited) == 2
    # Resources read at once, each on a connection of its own: after a 429, the same
    # connection asks again only once the header's second has passed (the backoff alone, factor
    # 0.05, would retry within 0.1 s), and then gets its answer.
    for answer in limited:
        after = [r for r in mine if r.connection == answer.connection and r.at > answer.at]
        assert after and after[0].at - answer.at >= 0.95
    assert mine[-1].status == 200


def test_sustained_rate_limit_slows_the_load_but_loses_nothing(api, fresh, small_company):
    api.faults.set(requests_per_second=10, vendor="hubspot")
    start = len(api.log)
    _load("hubspot", api, fresh)
    _assert_exact_counts("hubspot", fresh, small_company)
    statuses = [r.status for r in api.log[start:]]
    assert statuses.count(429) >= 1 and statuses[-1] == 200


@pytest.mark.parametrize("source", API_SOURCES)
def test_burst_of_server_errors_is_retried(source, api, fresh, small_company):
    api.faults.set(server_errors=3, vendor=source)
    start = len(api.log)
    _load(source, api, fresh)
    _assert_exact_counts(source, fresh, small_company)
    answers = api.log[start:]
    assert [r.status for r in answers].count(503) == 3
    # Every request answered 503 was asked again on its connection until it succeeded.
    for i, failed in enumerate(answers):
        if failed.status == 503:
            again = [r for r in answers[i + 1 :] if (r.connection, r.path) == (failed.connection, failed.path)]
            assert again and again[-1].status == 200


@pytest.mark.parametrize("source", API_SOURCES)
def test_truncated_body_is_read_again(source, api, fresh, small_company):
    api.faults.set(truncated=2, vendor=source)
    start = len(api.log)
    _load(source, api, fresh)
    _assert_exact_counts(source, fresh, small_company)
    answers = api.log[start:]
    cut = [i for i, r in enumerate(answers) if r.cut]
    assert len(cut) == 2
    # A page cut short was asked for again until it came whole.
    for i in cut:
        assert any(r.path == answers[i].path and not r.cut for r in answers[i + 1 :])


def test_persistent_failure_names_source_endpoint_and_status(api, fresh):
    api.faults.set(server_errors=10**6, vendor="stripe")
    with pytest.raises(SourceRequestError, match=r"^stripe: GET /stripe/v1/\w+ answered HTTP 503: ") as info:
        _load("stripe", api, fresh)
    assert info.value.status == 503
    assert len([r for r in api.log if r.status == 503]) >= 4  # every attempt was made


@pytest.mark.parametrize("source", API_SOURCES)
def test_bad_credentials_fail_with_source_endpoint_and_status(source, api, fresh):
    bad = {"stripe": {"api_key": "sk_wrong"}, "hubspot": {"token": "wrong"}, "zendesk": {"api_token": "wrong"}}[source]
    start = len(api.log)
    with pytest.raises(
        SourceRequestError, match=rf"^{source}: GET /{source}/\S+ answered HTTP 401: check the credentials"
    ):
        _load(source, api, fresh, **bad)
    # A 401 is not worth retrying: resources are read at once, and each asked at most once
    # (retries, 4 attempts here, would make that several times per resource).
    answers = [r for r in api.log[start:] if r.vendor == source]
    resources = _source(source, api).resources
    assert {r.status for r in answers} == {401}
    assert 1 <= len(answers) <= len(resources)


# --- Bad records: quarantined with a reason, never dropped, never blocking -----------------

BAD_RECORDS = {
    "stripe": ("customers", {"id": None, "object": "customer", "created": 0, "email": "ghost@example.com"}),
    "hubspot": ("companies", {"id": None, "properties": {"name": "Ghost Inc"}, "archived": False}),
    "zendesk": (
        "organizations",
        {"id": None, "name": "Ghost Inc", "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"},
    ),
}


@pytest.fixture(scope="module")
def doctored_api(small_company, tmp_path_factory):
    """The sample company with one record lacking its id in each vendor's data."""
    sources = tmp_path_factory.mktemp("doctored") / "sources"
    shutil.copytree(settings().sources_dir, sources)
    for system, (obj, record) in BAD_RECORDS.items():
        with (sources / system / f"{obj}.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    with VendorApiServer(sources) as server:
        yield server


def _quarantine(schema: str, warehouse) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            f"select source, resource, reason, raw_record from {schema}.quarantine order by all"
        ).fetchall()


@pytest.mark.parametrize("source", API_SOURCES)
def test_record_without_id_is_quarantined_and_the_rest_loads(source, doctored_api, fresh, small_company):
    _load(source, doctored_api, fresh)
    _load(source, doctored_api, fresh)  # the same bad record read again is stored once
    _assert_exact_counts(source, fresh, small_company)
    obj, record = BAD_RECORDS[source]
    [(src, resource, reason, raw)] = _quarantine(DATASETS[source], fresh.warehouse)
    assert (src, resource) == (source, obj)
    assert "missing required field(s): id" in reason
    assert json.loads(raw)["name" if source != "stripe" else "email"] in json.dumps(record)


def _event(i: int, **changes) -> dict:
    event = {
        "message_id": f"msg_{i:04d}",
        "type": "track",
        "event": "app.viewed.dashboard",
        "user_id": "usr_1",
        "account_id": "ws_1",
        "timestamp": "2026-11-20T10:00:00.000Z",
        "received_at": "2026-11-20T10:00:02.000Z",
        "properties": {"plan": "growth"},
    }
    event.update(changes)
    return event


def _drop(folder, name: str, lines: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    with gzip.open(folder / name, "wt") as f:
        f.write(text)


def _load_usage(cfg):
    return load("usage_events", cfg, landing_dir=str(cfg.data_dir / "landing"))


def _usage(cfg, sql: str) -> list[tuple]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_malformed_usage_lines_are_quarantined_with_file_line_and_reason(fresh):
    landing = fresh.data_dir / "landing"
    _drop(
        landing,
        "events_2026-11-20.jsonl.gz",
        [
            _event(1),
            "{this is not json",
            _event(2, message_id=None),
            _event(3, timestamp="yesterday"),
            _event(4, user_id=42),
            _event(5),
        ],
    )
    _load_usage(fresh)
    # A number where text is expected is kept as its text: nothing is lost.
    assert _usage(fresh, "select message_id, user_id from raw_usage_events.events order by 1") == [
        ("msg_0001", "usr_1"),
        ("msg_0004", "42"),
        ("msg_0005", "usr_1"),
    ]
    assert _usage(fresh, "select location, reason from raw_usage_events.quarantine order by location") == [
        (
            "events_2026-11-20.jsonl.gz:2",
            "not valid JSON: Expecting property name enclosed in double quotes at column 2",
        ),
        ("events_2026-11-20.jsonl.gz:3", "missing required field(s): message_id"),
        ("events_2026-11-20.jsonl.gz:4", "timestamp is not an ISO 8601 timestamp: 'yesterday'"),
    ]
    # The rows the SQL flagged are gone once their lines are quarantined.
    assert _usage(fresh, "select count(*) from raw_usage_events.events where _rejected is not false") == [(0,)]


def test_duplicated_usage_file_changes_nothing(fresh, small_company):
    landing = fresh.data_dir / "landing"
    landing.mkdir(parents=True)
    originals = sorted(settings().landing_dir.glob("*.jsonl.gz"))[-3:]
    for path in originals:
        shutil.copy(path, landing / path.name)
    _load_usage(fresh)
    before = _usage(fresh, "select message_id, event, timestamp from raw_usage_events.events order by 1")
    # The collector re-sends a file under a new name.
    shutil.copy(originals[-1], landing / originals[-1].name.replace(".jsonl.gz", ".resent.jsonl.gz"))
    info = _load_usage(fresh)
    assert _usage(fresh, "select message_id, event, timestamp from raw_usage_events.events order by 1") == before
    # It was read (a new name is a new file), not skipped unseen.
    assert any(
        n.endswith(".resent.jsonl.gz")
        for n in info.pipeline.state["sources"]["usage_events"]["resources"]["events"]["loaded_files"]
    )


def test_usage_file_resent_in_the_same_batch_is_stored_once(fresh, small_company):
    landing = fresh.data_dir / "landing"
    landing.mkdir(parents=True)
    original = sorted(settings().landing_dir.glob("*.jsonl.gz"))[-1]
    shutil.copy(original, landing / original.name)
    shutil.copy(original, landing / original.name.replace(".jsonl.gz", ".resent.jsonl.gz"))
    _load_usage(fresh)
    [(rows, ids)] = _usage(fresh, "select count(*), count(distinct message_id) from raw_usage_events.events")
    with gzip.open(original, "rt") as f:
        assert rows == ids == sum(1 for line in f if line.strip())


def test_new_usage_column_is_added_and_old_rows_keep_null(fresh):
    landing = fresh.data_dir / "landing"
    _drop(landing, "events_2026-11-19.jsonl.gz", [_event(1), _event(2)])
    _load_usage(fresh)
    _drop(landing, "events_2026-11-20.jsonl.gz", [_event(3, session_id="s_1"), _event(4, session_id="s_2")])
    _load_usage(fresh)
    assert _usage(fresh, "select message_id, session_id from raw_usage_events.events order by 1") == [
        ("msg_0001", None),
        ("msg_0002", None),
        ("msg_0003", "s_1"),
        ("msg_0004", "s_2"),
    ]


def test_usage_column_changing_type_goes_to_a_variant_column(fresh):
    landing = fresh.data_dir / "landing"
    _drop(landing, "events_2026-11-19.jsonl.gz", [_event(1, duration_ms=120), _event(2, duration_ms=80)])
    _load_usage(fresh)
    _drop(landing, "events_2026-11-20.jsonl.gz", [_event(3, duration_ms="1.5s"), _event(4, duration_ms="2s")])
    _drop(landing, "events_2026-11-21.jsonl.gz", [_event(5, duration_ms=99)])  # and back: no block
    _load_usage(fresh)
    assert _usage(
        fresh, "select message_id, duration_ms, duration_ms__v_text from raw_usage_events.events order by 1"
    ) == [
        ("msg_0001", 120, None),
        ("msg_0002", 80, None),
        ("msg_0003", None, "1.5s"),
        ("msg_0004", None, "2s"),
        ("msg_0005", 99, None),
    ]
    # A typed column never changes type: a bad value is quarantined instead.
    _drop(landing, "events_2026-11-22.jsonl.gz", [_event(6, timestamp=1763800000)])
    _load_usage(fresh)
    assert _usage(fresh, "select reason from raw_usage_events.quarantine") == [
        ("timestamp is not an ISO 8601 timestamp: 1763800000",)
    ]


# --- Stripe API versions: both object shapes load the same -----------------------------


def test_stripe_accounts_on_the_pre_2025_03_31_shape_load_the_same(small_company, fresh):
    """Older accounts get the current period on the subscription, `invoice.subscription`, and
    each invoice line's price and subscription item at its top level."""
    with VendorApiServer(settings().sources_dir, stripe_api_version="2024-06-20") as old:
        answer = old.route(
            "GET",
            "/stripe/v1/subscriptions?limit=1&status=all",
            {"Authorization": f"Bearer {DEMO_CREDENTIALS['stripe_api_key']}"},
        )[1]
        sample = orjson.loads(orjson.dumps(answer))["data"][0]
        assert "current_period_start" in sample and "current_period_start" not in sample["items"]["data"][0]
        _load("stripe", old, fresh)
    _assert_exact_counts("stripe", fresh, small_company)
    with duckdb.connect(str(fresh.warehouse), read_only=True) as con:
        [(items, with_period)] = con.execute(
            "select count(*), count(current_period_start) from raw_stripe.subscriptions__items__data"
        ).fetchall()
        [(invoices, with_sub)] = con.execute("select count(*), count(subscription) from raw_stripe.invoices").fetchall()
        columns = {
            r[0]
            for r in con.execute(
                "select column_name from duckdb_columns() "
                "where schema_name = 'raw_stripe' and table_name = 'subscriptions'"
            ).fetchall()
        }
        [(lines, priced, itemized)] = con.execute(
            "select count(*), count(pricing__price_details__price), "
            "count(parent__subscription_item_details__subscription_item)"
            " from raw_stripe.invoices__lines__data"
        ).fetchall()
    assert items == with_period > 0
    assert invoices == with_sub > 0
    assert lines == priced == itemized == invoices  # lines in the current shape's columns
    assert "current_period_start" not in columns  # normalised onto the items, one shape downstream


# --- HTTP clients honour the environment's proxy settings, read once ----------------------


@pytest.fixture
def proxy():
    """A forward proxy that answers every request itself and notes what it was asked for."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    httpd.shutdown()


def test_clients_go_through_the_environment_proxy_read_once(monkeypatch, proxy):
    from connectors.http import ApiClient

    url, asked = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corporate.pem")
    remote = ApiClient("stripe", "http://api.stripe.invalid/")
    local = ApiClient("stripe", "http://localhost:1/stripe")
    assert (remote.proxy, local.proxy) == (url, "")
    assert remote.ca_bundle == "/etc/ssl/certs/corporate.pem"
    # Read once: the client made before the change still goes through the proxy.
    monkeypatch.delenv("HTTP_PROXY")
    assert remote.get("v1/customers", {"limit": 1}).body == b"{}"
    assert asked == ["http://api.stripe.invalid/v1/customers?limit=1"]


def test_clients_take_retries_and_timeout_from_dlt_runtime_settings(monkeypatch):
    from connectors.http import ApiClient

    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.5")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "7")
    monkeypatch.setenv("RUNTIME__REQUEST_TIMEOUT", "11")
    client = ApiClient("hubspot", "http://127.0.0.1:8765/hubspot")
    assert (client.attempts, client.backoff.multiplier, client.backoff.max, client.timeout) == (3, 0.5, 7, 11)


def test_a_vendor_that_never_answers_fails_naming_the_source(monkeypatch):
    from connectors.http import ApiClient

    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    client = ApiClient("zendesk", "http://127.0.0.1:9/zendesk")  # the discard port: nothing listens
    with pytest.raises(
        SourceRequestError, match=r"^zendesk: GET /zendesk/api/v2/users.json did not answer: .*after every retry"
    ):
        client.get("api/v2/users.json")


def _make_pipelines_at_once(folders, barrier, failures) -> None:
    for data in folders:
        barrier.wait()
        cfg = dataclasses.replace(settings(), data_dir=data, warehouse=data / "warehouse.duckdb")
        try:
            for source in DATASETS:
                make_pipeline(source, cfg)
        except Exception as error:  # noqa: BLE001 - the test reports what the process met
            failures.put(f"{type(error).__name__}: {error}")


def test_processes_starting_together_on_a_new_data_folder_all_make_their_pipelines(tmp_path):
    """The service's processes (workers, webserver, daemon) each make every dlt pipeline when
    they load the definitions, and on a new data folder they start together: none may crash
    on a pipeline folder another is making (dlt wipes one that holds no state yet). Several
    rounds, each on a new data folder, since a race is not met every time."""
    folders = [tmp_path / f"data_{n}" for n in range(8)]
    forked = multiprocessing.get_context("fork")
    processes = 8
    barrier, failures = forked.Barrier(processes), forked.Queue()
    started = [
        forked.Process(target=_make_pipelines_at_once, args=(folders, barrier, failures)) for _ in range(processes)
    ]
    for process in started:
        process.start()
    for process in started:
        process.join(timeout=300)
    met = []
    while not failures.empty():
        met.append(failures.get())
    assert met == [] and [process.exitcode for process in started] == [0] * processes
    for data in folders:
        for source in DATASETS:
            assert (data / "dlt" / f"spine_{source}" / "state.json").exists()
