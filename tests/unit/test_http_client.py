"""The platform's one HTTP client (`data_spine.http_client`) against a real local HTTP server:
what it retries and what not, how long it waits, its timeouts and deadline, and a JSON POST
delivered once; then what the connectors and alert delivery say when it fails."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from data_spine.http_client import BodyError, HttpClient, RequestPolicy, StatusError, TransferError, environment_proxy

QUICK = RequestPolicy(max_attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05, timeout_seconds=5)


class Server:
    """Answers each path from a script of (status, headers, body, delay) answers, the last one
    repeated, and notes every request with the connection it came on."""

    def __init__(self):
        self.script: dict[str, list[tuple]] = {}
        self.seen: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept-alive connections, as real APIs keep them

            def do_GET(self):  # noqa: N802 - http.server's name
                server.answer(self)

            def do_POST(self):  # noqa: N802
                server.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        length = int(handler.headers.get("Content-Length") or 0)
        self.seen.append(
            {
                "method": handler.command,
                "path": handler.path,
                "headers": dict(handler.headers),
                "body": handler.rfile.read(length),
                "connection": handler.client_address[1],
                "at": time.monotonic(),
            }
        )
        queue = self.script.get(path) or [(200, {}, b"{}", 0)]
        status, headers, body, delay = queue.pop(0) if len(queue) > 1 else queue[0]
        time.sleep(delay)
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the client gave up waiting

    def requests(self, path: str) -> list[dict]:
        return [r for r in self.seen if r["path"].split("?")[0] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _silent_host():
    """Accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_get_retries_a_503_and_keeps_its_connection(server):
    server.script["/v1/customers"] = [(503, {}, b"busy", 0), (200, {}, b'{"data": [1, 2]}', 0)]
    client = HttpClient(server.url, {"Authorization": "Bearer k"}, policy=QUICK, parse_json=True)
    response = client.get("v1/customers", {"limit": 2})
    assert (response.status, response.body, response.json["data"][1]) == (200, b'{"data": [1, 2]}', 2)
    seen = server.requests("/v1/customers")
    assert [r["path"] for r in seen] == ["/v1/customers?limit=2"] * 2
    assert all(r["headers"]["Authorization"] == "Bearer k" for r in seen)
    for _ in range(3):
        client.get("v1/other")
    # One kept-alive connection for the answered requests (a 503 keeps it too).
    assert len({r["connection"] for r in server.seen}) == 1


def test_a_429_waits_as_long_as_retry_after_asks(server):
    server.script["/limited"] = [(429, {"Retry-After": "1"}, b"slow down", 0), (200, {}, b"{}", 0)]
    started = time.monotonic()
    HttpClient(server.url, policy=QUICK).get("limited")
    first, second = server.requests("/limited")
    assert 0.9 <= second["at"] - first["at"] < 3, "the backoff alone would have waited 0.01 s"
    assert time.monotonic() - started < 3


def test_retry_after_as_an_http_date(server):
    server.script["/limited"] = [
        (429, {"Retry-After": formatdate(time.time() + 2, usegmt=True)}, b"", 0),
        (200, {}, b"{}", 0),
    ]
    HttpClient(server.url, policy=QUICK).get("limited")
    first, second = server.requests("/limited")
    assert 0.9 < second["at"] - first["at"] < 3  # a date in whole seconds: 1 to 2 s from now


def test_a_400_is_not_retried(server):
    server.script["/bad"] = [(400, {}, b'{"error": "no such field"}', 0)]
    with pytest.raises(StatusError) as caught:
        HttpClient(server.url, policy=QUICK).get("bad")
    error = caught.value
    assert (error.status, error.retryable, error.text) == (400, False, '{"error": "no such field"}')
    assert error.endpoint == "/bad" and str(error) == f"GET {server.url}/bad answered HTTP 400"
    assert len(server.requests("/bad")) == 1


def test_a_5xx_that_lasts_fails_after_every_attempt(server):
    server.script["/down"] = [(502, {}, b"", 0)]
    with pytest.raises(StatusError) as caught:
        HttpClient(server.url, policy=QUICK).get("down")
    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert len(server.requests("/down")) == QUICK.max_attempts


def test_an_attempt_that_gets_no_answer_in_time_times_out_and_is_retried(server):
    server.script["/slow"] = [(200, {}, b"{}", 3)]
    policy = RequestPolicy(max_attempts=2, backoff_seconds=0.01, timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(TransferError) as caught:
        HttpClient(server.url, policy=policy).get("slow")
    assert time.monotonic() - started < 2
    assert (caught.value.timed_out, caught.value.timeout, caught.value.retryable) == (True, 0.3, True)
    assert len(server.requests("/slow")) == 2


def test_a_refused_connection_is_retried_and_named():
    url = f"http://127.0.0.1:{_unused_port()}"
    with pytest.raises(TransferError) as caught:
        HttpClient(url, policy=QUICK).get("x")
    assert (caught.value.timed_out, caught.value.reason) == (False, "connection refused")
    assert caught.value.error.endswith("(curl error 7)")


def test_post_json_is_delivered_once(server):
    server.script["/hook"] = [(200, {}, b"ok", 0)]
    payload = {"text": "Müller <!channel>", "n": 3, "nested": {"ok": True}, 1: "int key"}
    response = HttpClient(server.url + "/hook", policy=QUICK).post_json(server.url + "/hook", payload)
    assert (response.status, response.body, response.json) == (200, b"ok", None)
    [seen] = server.requests("/hook")
    assert seen["method"] == "POST" and seen["headers"]["Content-Type"] == "application/json"
    assert "Expect" not in seen["headers"]
    assert json.loads(seen["body"]) == {"text": "Müller <!channel>", "n": 3, "nested": {"ok": True}, "1": "int key"}


def test_the_deadline_bounds_a_silent_host():
    policy = RequestPolicy(max_attempts=4, backoff_seconds=0.05, timeout_seconds=5, max_wait_seconds=1)
    with _silent_host() as url:
        client = HttpClient(url, policy=policy)
        started = time.monotonic()
        with pytest.raises(TransferError) as caught:
            client.post_json(url + "/s", {"text": "hello"})
        waited = time.monotonic() - started
    assert 0.9 < waited < 1.5, f"held {waited:.2f} s with max_wait_seconds=1"
    assert caught.value.timed_out and caught.value.timeout == pytest.approx(1, abs=0.05)


def test_the_deadline_bounds_a_channel_answering_503(server):
    server.script["/s"] = [(503, {}, b"", 0)]
    policy = RequestPolicy(max_attempts=10, backoff_seconds=0.2, timeout_seconds=5, max_wait_seconds=1)
    started = time.monotonic()
    with pytest.raises(StatusError) as caught:
        HttpClient(server.url, policy=policy).post_json(server.url + "/s", {})
    assert time.monotonic() - started < 1.2 and caught.value.status == 503
    # 0.2, 0.4 s waits fit in the second; the next (0.8 s) would not.
    assert len(server.requests("/s")) == 3


def test_a_retry_after_past_the_deadline_is_not_waited_for(server):
    server.script["/s"] = [(429, {"Retry-After": "30"}, b"", 0)]
    policy = RequestPolicy(max_attempts=4, backoff_seconds=0.01, max_wait_seconds=2)
    started = time.monotonic()
    with pytest.raises(StatusError):
        HttpClient(server.url, policy=policy).get("s")
    assert time.monotonic() - started < 1 and len(server.requests("/s")) == 1


def test_a_body_that_is_not_json(server):
    server.script["/html"] = [(200, {}, b"<html>maintenance</html>", 0)]
    with pytest.raises(BodyError, match="the body is not JSON"):
        HttpClient(server.url, policy=QUICK, parse_json=True).get("html")


def test_proxy_from_the_environment(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal.example,10.0.0.0/8")
    assert environment_proxy("https://api.stripe.com/v1") == "http://proxy:3128"
    assert environment_proxy("http://api.stripe.com/v1") == ""  # no HTTP_PROXY
    assert environment_proxy("https://localhost:8765/stripe") == ""
    assert environment_proxy("https://hooks.internal.example/x") == ""
    assert environment_proxy("https://10.1.2.3/x") == ""
    assert environment_proxy("https://11.1.2.3/x") == "http://proxy:3128"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/corporate.pem")
    client = HttpClient("https://api.stripe.com/")
    assert (client.proxy, client.ca_bundle) == ("http://proxy:3128", "/etc/ssl/corporate.pem")


def test_the_defaults_are_one_set():
    client = HttpClient("http://127.0.0.1:9/")
    assert client.policy == RequestPolicy(
        max_attempts=6, backoff_seconds=1.0, max_backoff_seconds=60.0, timeout_seconds=60.0, max_wait_seconds=None
    )
    assert (client.attempts, client.backoff.multiplier, client.backoff.max, client.timeout) == (6, 1.0, 60.0, 60.0)


# --- what its users say when it fails ---------------------------------------------------------


def test_the_connectors_name_source_endpoint_status_and_hint(server, monkeypatch):
    from connectors.http import ApiClient, SourceRequestError

    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    server.script["/stripe/v1/customers"] = [(401, {}, b'{"error": "invalid api key"}', 0)]
    server.script["/stripe/v1/charges"] = [(503, {}, b"", 0)]
    server.script["/stripe/v1/refunds"] = [(200, {}, b"<html>", 0)]
    client = ApiClient("stripe", server.url + "/stripe")
    with pytest.raises(
        SourceRequestError,
        match=r"^stripe: GET /stripe/v1/customers answered HTTP 401: check the "
        r'credentials .*; response: \{"error": "invalid api key"\}$',
    ):
        client.get("v1/customers", {"limit": 100})
    with pytest.raises(
        SourceRequestError,
        match=r"^stripe: GET /stripe/v1/charges answered HTTP 503: the vendor kept "
        r"failing after every retry$",
    ):
        client.get("v1/charges")
    assert len(server.requests("/stripe/v1/charges")) == 2
    with pytest.raises(SourceRequestError, match=r"^stripe: GET /stripe/v1/refunds answered HTTP 200: the body is not"):
        client.get("v1/refunds")


def test_alert_delivery_says_why_a_channel_failed(server):
    from quality.alert_conditions import Alert
    from quality.alert_delivery import DeliveryError, Webhook

    alert = Alert(
        id="a1",
        key="k",
        status="firing",
        kind="blocking_check",
        severity="critical",
        state="fail",
        dataset="customer",
        what="check failed",
        how_many="1 of 2",
        since=None,
        likely_causes=[],
        owner="Data Engineering",
        suggested_action="",
        details={},
        sent_at="2026-11-21T06:00:00Z",
    )
    settings = {"timeout_seconds": 5, "max_attempts": 3, "backoff_seconds": 0.01, "max_wait_seconds": 2}
    server.script["/gone"] = [(404, {}, b"no such hook", 0)]
    server.script["/busy"] = [(500, {}, b"", 0)]
    server.script["/ok"] = [(500, {}, b"", 0), (200, {}, b"ok", 0)]
    with pytest.raises(DeliveryError) as gone:
        Webhook(server.url + "/gone", **settings).send(alert)
    assert (str(gone.value), gone.value.retryable) == ("webhook: answered HTTP 404: no such hook", False)
    with pytest.raises(DeliveryError) as busy:
        Webhook(server.url + "/busy", **settings).send(alert)
    assert (str(busy.value), busy.value.retryable) == ("webhook: answered HTTP 500", True)
    Webhook(server.url + "/ok", **settings).send(alert)
    assert [len(server.requests(p)) for p in ("/gone", "/busy", "/ok")] == [1, 3, 2]
    assert json.loads(server.requests("/ok")[1]["body"])["id"] == "a1"
    with pytest.raises(DeliveryError, match=r"^webhook: POST failed: connection refused$"):
        Webhook(f"http://127.0.0.1:{_unused_port()}/x", **settings).send(alert)
