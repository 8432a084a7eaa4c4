"""One HTTP server hosting the three vendor APIs under `/stripe`, `/hubspot` and `/zendesk`."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from sample_company.vendor_api import hubspot, stripe, zendesk
from sample_company.vendor_api.faults import FaultInjector
from sample_company.vendor_api.store import RecordStore

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


# Each vendor's error bodies for the faults the server can inject.
RATE_LIMITED = {
    "stripe": {"error": {"type": "invalid_request_error", "code": "rate_limit",
                         "message": "Too many requests hit the API too quickly."}},
    "hubspot": {"status": "error", "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT", "policyName": "SECONDLY"},
    "zendesk": {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"},
}
UNAVAILABLE = {
    "stripe": {"error": {"type": "api_error", "message": "An unknown error occurred."}},
    "hubspot": {"status": "error", "message": "Service unavailable", "category": "SERVICE_UNAVAILABLE"},
    "zendesk": {"error": "ServiceUnavailable", "description": "Service temporarily unavailable"},
}


class VendorApiServer:
    """Serve the generated sources over HTTP in a background thread.

    Use as a context manager; `base_url(vendor)` gives the URL to hand to a connector.
    `faults.set(...)` makes it misbehave (see `faults.Faults`); `log` lists every request
    answered, as `Request`s.
    """

    def __init__(self, sources_dir: Path, host: str = "127.0.0.1", port: int = 0, credentials=None):
        self.store = RecordStore(sources_dir)
        self.credentials = dict(credentials or DEMO_CREDENTIALS)
        self.faults = FaultInjector()
        self.log: list[Request] = []
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, vendor: str) -> str:
        return f"{self.url}/{vendor}"

    def start(self) -> "VendorApiServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vendor-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def __enter__(self) -> "VendorApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def requests_served(self) -> int:
        return len(self.log)

    def route(self, method: str, raw_path: str, headers) -> tuple[int, dict, dict, bool]:
        """Answer one request: (status, body, extra headers, truncate the body)."""
        split = urlsplit(raw_path)
        vendor = split.path.lstrip("/").partition("/")[0]
        verdict = self.faults.judge(vendor)
        if verdict.status == 429:
            return 429, RATE_LIMITED.get(vendor, {}), verdict.headers, False
        if verdict.status is not None:
            return verdict.status, UNAVAILABLE.get(vendor, {}), verdict.headers, False
        status, body, extra = self._answer(raw_path, headers)
        return status, body, extra, verdict.truncate

    def _answer(self, raw_path: str, headers) -> tuple[int, dict, dict]:
        split = urlsplit(raw_path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        vendor, _, rest = split.path.lstrip("/").partition("/")
        creds = self.credentials
        base = self.base_url(vendor)
        if vendor == "stripe":
            if not stripe.authorized(headers, creds["stripe_api_key"]):
                return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}, {}
            status, body = stripe.handle(self.store, rest, params)
        elif vendor == "hubspot":
            if not hubspot.authorized(headers, creds["hubspot_token"]):
                return 401, {"status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"}, {}
            status, body = hubspot.handle(self.store, rest, params, base)
        elif vendor == "zendesk":
            if not zendesk.authorized(headers, creds["zendesk_email"], creds["zendesk_api_token"]):
                return 401, {"error": "Couldn't authenticate you"}, {}
            status, body = zendesk.handle(self.store, rest, params, base)
        else:
            return 404, {"error": f"no vendor API at /{vendor}"}, {}
        return status, body, {}

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                try:
                    status, body, extra, truncate = server.route("GET", self.path, self.headers)
                except KeyError as exc:
                    status, body, extra, truncate = 404, {"error": f"unknown object {exc}"}, {}, False
                vendor = urlsplit(self.path).path.lstrip("/").partition("/")[0]
                server.log.append(Request(time.monotonic(), vendor, self.path, status))
                payload = json.dumps(body).encode()
                self.send_response(status)
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
