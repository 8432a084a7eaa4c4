"""One HTTP server hosting the three vendor APIs under `/stripe`, `/hubspot` and `/zendesk`.

Besides reading, each vendor answers its own deletion requests (Stripe's customer update and
deletion, HubSpot's GDPR deletion of a contact, Zendesk's soft and permanent deletion of a
user; see each vendor's module): they change the vendor's files on disk, so what they did
holds for every later request and every later server on the same folder, and each one is
noted in the vendor's `deletion_requests.jsonl` (when, method, path, the object's id, status).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

import orjson

from sample_company.vendor_api import hubspot, stripe, zendesk
from sample_company.vendor_api.faults import FaultInjector
from sample_company.vendor_api.store import DELETION_REQUESTS, RecordStore, Write

# Credentials the local stand-ins accept. They guard nothing real; a deployment passes the
# vendors' own credentials to the connectors through dlt secrets instead.
DEMO_CREDENTIALS = {
    "stripe_api_key": "sk_test_data_spine_local",
    "hubspot_token": "pat-local-data-spine",
    "zendesk_email": "support@example.com",
    "zendesk_api_token": "local-data-spine-token",
}


class Request(NamedTuple):
    at: float  # time.monotonic() when answered
    vendor: str
    path: str  # with the query string
    status: int
    connection: str = ""  # the client's host:port: requests on one connection come in order
    cut: bool = False  # the body was cut short (the `truncated` fault)


# Each vendor's error bodies for the faults the server can inject.
RATE_LIMITED = {
    "stripe": {
        "error": {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": "Too many requests hit the API too quickly.",
        }
    },
    "hubspot": {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "SECONDLY",
    },
    "zendesk": {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"},
}
UNAVAILABLE = {
    "stripe": {"error": {"type": "api_error", "message": "An unknown error occurred."}},
    "hubspot": {"status": "error", "message": "Service unavailable", "category": "SERVICE_UNAVAILABLE"},
    "zendesk": {"error": "ServiceUnavailable", "description": "Service temporarily unavailable"},
}


PAGING_PARAMS = {"starting_after", "after", "cursor", "page[after]"}


def _is_follow_up(query: str, body: dict | None) -> bool:
    """A request for a page after the first, in any of the vendors' paging styles."""
    return bool(PAGING_PARAMS & dict(parse_qsl(query)).keys()) or bool((body or {}).get("after"))


def _listing(query: str, body: dict | None) -> tuple[str, str]:
    """What identifies a listing across its pages: its query and search body without paging."""
    params = sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in PAGING_PARAMS)
    search = {k: v for k, v in (body or {}).items() if k != "after"}
    return repr(params), repr(sorted(search.items(), key=lambda kv: kv[0]))


def warm(store: RecordStore) -> None:
    """Index every vendor file in the store's folder (keeping each index beside its file) and
    build the orders lists are paged in."""
    for path in sorted(store.sources_dir.glob("*/*.jsonl")):
        if path.name == DELETION_REQUESTS:
            continue
        system, obj = path.parent.name, path.stem
        if system == "zendesk":
            zendesk.warm(store, obj)
        elif system == "hubspot":
            store.derived(hubspot.table(store, obj), "by_archived", hubspot.split)
    stripe.warm(store)


def index_files(sources_dir: Path) -> None:
    """Index what the vendors' files now hold, for the servers that will read them: the commands
    that change a company's data call this, as a vendor indexes its data when it changes."""
    warm(RecordStore(sources_dir))


class VendorApiServer:
    """Serve the generated sources over HTTP in a background thread.

    Use as a context manager; `base_url(vendor)` gives the URL to hand to a connector.
    `faults.set(...)` makes it misbehave (see `faults.Faults`); `log` lists every request
    answered, as `Request`s.
    """

    def __init__(
        self,
        sources_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials=None,
        stripe_api_version: str = stripe.CURRENT_VERSION,
    ):
        self.store = RecordStore(sources_dir)
        # The Stripe account's default API version: the shape a request without
        # `Stripe-Version` gets.
        self.stripe_api_version = stripe_api_version
        self.credentials = dict(credentials or DEMO_CREDENTIALS)
        self.faults = FaultInjector()
        self.log: list[Request] = []
        self._last_page: dict[tuple[str, str], dict] = {}
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    def start(self) -> VendorApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vendor-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def __enter__(self) -> VendorApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def warm(self) -> None:
        """Index every file and build the orders pages are cut from, as a real vendor has its
        data at hand (otherwise the first requests pay for it)."""
        warm(self.store)

    def route(
        self, method: str, raw_path: str, headers, body: dict | None = None
    ) -> tuple[int, dict | None, dict, bool]:
        """Answer one request: (status, body, extra headers, truncate the body)."""
        split = urlsplit(raw_path)
        vendor = split.path.lstrip("/").partition("/")[0]
        verdict = self.faults.judge(vendor)
        if verdict.status == 429:
            return 429, RATE_LIMITED.get(vendor, {}), verdict.headers, False
        if verdict.status is not None:
            return verdict.status, UNAVAILABLE.get(vendor, {}), verdict.headers, False
        status, answer, extra = self._answer(method, raw_path, headers, body)
        # Only a listing's pages are redelivered; a write is answered once.
        reading = method == "GET" or split.path.endswith(("/search", "/batch/read"))
        if status == 200 and reading:
            # A redelivery repeats the page before this one of the same listing: the path with
            # its query (or search body) less the paging parameters, since two listings may read
            # one path at once (Zendesk's tickets and their metric sets).
            endpoint = (method, split.path, *_listing(split.query, body))
            previous = self._last_page.get(endpoint)
            self._last_page[endpoint] = answer
            if verdict.redeliver and previous is not None and _is_follow_up(split.query, body):
                self.faults.redelivered_one()
                return status, previous, extra, verdict.truncate
        return status, answer, extra, verdict.truncate

    def _answer(self, method: str, raw_path: str, headers, body: dict | None) -> tuple[int, dict | None, dict]:
        split = urlsplit(raw_path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        vendor, _, rest = split.path.lstrip("/").partition("/")
        creds = self.credentials
        base = self.base_url(vendor)
        if vendor == "stripe":
            if not stripe.authorized(headers, creds["stripe_api_key"]):
                return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}, {}
            version = headers.get("Stripe-Version") or self.stripe_api_version
            if method != "GET":
                written = stripe.write(self.store, method, rest, body, version)
                if written is None:
                    message = f"Unrecognized request URL ({method}: /{rest.strip('/')})."
                    return 404, {"error": {"type": "invalid_request_error", "message": message}}, {}
                return self._written(vendor, method, split.path, written)
            expand = tuple(v for k, v in parse_qsl(split.query) if k == "expand[]")
            status, answer = stripe.handle(self.store, rest, params, version, expand)
        elif vendor == "hubspot":
            if not hubspot.authorized(headers, creds["hubspot_token"]):
                return (
                    401,
                    {
                        "status": "error",
                        "message": "Authentication credentials not found.",
                        "category": "INVALID_AUTHENTICATION",
                    },
                    {},
                )
            written = hubspot.write(self.store, method, rest, body)
            if written is not None:
                return self._written(vendor, method, split.path, written)
            if method not in ("GET", "POST"):
                return 405, {"status": "error", "message": f"{method} is not supported here", "category": "ERROR"}, {}
            status, answer = hubspot.handle(self.store, rest, params, base, body if method == "POST" else None)
        elif vendor == "zendesk":
            if not zendesk.authorized(headers, creds["zendesk_email"], creds["zendesk_api_token"]):
                return 401, {"error": "Couldn't authenticate you"}, {}
            written = zendesk.write(self.store, method, rest, body)
            if written is not None:
                return self._written(vendor, method, split.path, written)
            if method != "GET":
                return 404, {"error": "InvalidEndpoint", "description": "Not found"}, {}
            status, answer = zendesk.handle(self.store, rest, params, base)
        else:
            return 404, {"error": f"no vendor API at /{vendor}"}, {}
        return status, answer, {}

    def _written(self, vendor: str, method: str, path: str, written: Write) -> tuple[int, dict | None, dict]:
        """A write's answer, once the vendor's deletion log has it."""
        self.store.note_deletion(vendor, method, path, written.object_id, written.status)
        return written.status, written.body, {}

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; without this the body can wait for
            # a delayed ACK (tens of milliseconds per response on a kept-alive connection).
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._respond("GET", None)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get_content_type() == "application/x-www-form-urlencoded":
                    # Stripe's way: form fields, an empty value clearing a field.
                    self._respond("POST", dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)))
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"status": "error", "message": "Invalid JSON body"}, {}, False)
                    return
                self._respond("POST", body)

            def do_DELETE(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)  # a body means nothing to a deletion, but must be read
                self._respond("DELETE", None)

            def _respond(self, method: str, request_body: dict | None) -> None:
                try:
                    status, body, extra, truncate = server.route(method, self.path, self.headers, request_body)
                except KeyError as exc:
                    status, body, extra, truncate = 404, {"error": f"unknown object {exc}"}, {}, False
                self._send(status, body, extra, truncate)

            def _send(self, status: int, body: dict | None, extra: dict, truncate: bool) -> None:
                vendor = urlsplit(self.path).path.lstrip("/").partition("/")[0]
                server.log.append(
                    Request(
                        time.monotonic(), vendor, self.path, status, "{}:{}".format(*self.client_address[:2]), truncate
                    )
                )
                # orjson, because pages embed their records' stored serializations (`Fragment`s).
                payload = b"" if status == 204 else orjson.dumps(body)
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if truncate:
                    # Half the promised bytes, then the connection drops, as a proxy reset does.
                    self.wfile.write(payload[: len(payload) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            def log_message(self, format, *args):  # keep test and CLI output readable
                pass

        return Handler
