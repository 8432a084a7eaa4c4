"""One HTTP server hosting the three vendor APIs under `/stripe`, `/hubspot` and `/zendesk`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from sample_company.vendor_api import hubspot, stripe, zendesk
from sample_company.vendor_api.store import RecordStore

# Credentials the local stand-ins accept. They guard nothing real; a deployment passes the
# vendors' own credentials to the connectors through dlt secrets instead.
DEMO_CREDENTIALS = {
    "stripe_api_key": "sk_test_data_spine_local",
    "hubspot_token": "pat-local-data-spine",
    "zendesk_email": "support@example.com",
    "zendesk_api_token": "local-data-spine-token",
}


class VendorApiServer:
    """Serve the generated sources over HTTP in a background thread.

    Use as a context manager; `base_url(vendor)` gives the URL to hand to a connector.
    """

    def __init__(self, sources_dir: Path, host: str = "127.0.0.1", port: int = 0, credentials=None):
        self.store = RecordStore(sources_dir)
        self.credentials = dict(credentials or DEMO_CREDENTIALS)
        self.requests_served = 0
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

    def route(self, method: str, raw_path: str, headers) -> tuple[int, dict, dict]:
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
                    status, body, extra = server.route("GET", self.path, self.headers)
                except KeyError as exc:
                    status, body, extra = 404, {"error": f"unknown object {exc}"}, {}
                server.requests_served += 1
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args):  # keep test and CLI output readable
                pass

        return Handler
