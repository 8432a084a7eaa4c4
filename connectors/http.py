"""HTTP shared by the API connectors: kept-alive connections, retries, errors a person can act on.

Transfers go through libcurl (`pycurl`): a request costs a fifth of the CPU it costs in
`requests` or urllib3, whose pure-Python request and header handling was the larger part of a
big extraction, and libcurl waits for the vendor without holding Python's GIL, so the next
page can be on its way while the last one is processed (see `pages.read_ahead`).

Retries are tenacity's: 429, 5xx, dropped connections, timeouts and truncated bodies are tried
again with exponential backoff, waiting as long as a `Retry-After` header asks. Attempts,
backoff and timeout are dlt's runtime settings (`runtime.request_max_attempts`,
`request_backoff_factor`, `request_max_retry_delay`, `request_timeout` in `.dlt/config.toml`,
or `RUNTIME__REQUEST_MAX_ATTEMPTS`, ...).

Proxy and CA-bundle settings come from the environment as for any HTTP client (`HTTPS_PROXY`,
`NO_PROXY`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`), read once when the client is made.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import orjson
import pycurl
import simdjson
from dlt.common.configuration.inject import with_config
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.typing import ConfigValue
from requests.utils import get_environ_proxies
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tenacity.wait import wait_base

# Statuses worth another attempt: the vendor is busy or briefly broken.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
HINTS = {
    401: "check the credentials (dlt secrets or SOURCES__<SOURCE>__* variables)",
    403: "the credentials lack a permission or scope this endpoint needs",
    404: "check the base URL",
    429: "still rate limited after every retry; lower the load or raise runtime.request_max_attempts",
}


class SourceRequestError(RuntimeError):
    """A source's API kept failing (or refused us): names the source, endpoint and status."""

    def __init__(self, source: str, method: str, endpoint: str, status: int | None, detail: str):
        self.source, self.endpoint, self.status = source, endpoint, status
        answered = f"answered HTTP {status}" if status else "did not answer"
        super().__init__(f"{source}: {method} {endpoint} {answered}: {detail}")


class Page(NamedTuple):
    """One answered request: its JSON document and the bytes it was parsed from.

    The document is simdjson's (`pysimdjson`): read-only and dict-like (`get`, `[]`, `in`,
    `len`), and only the values read become Python objects. Paging needs a cursor from each
    page, and building every record as a dict to find it cost more than the request; the
    records themselves are read from `body` (see `pages.RecordReader`).
    """

    json: Any
    body: bytes


class _Retryable(Exception):
    """An attempt worth repeating: a retryable status (with its answer) or a transfer error."""

    def __init__(self, status: int | None, body: bytes = b"", retry_after: float | None = None, error: str = ""):
        super().__init__(error or f"HTTP {status}")
        self.status, self.body, self.retry_after, self.error = status, body, retry_after, error


class _wait_retry_after(wait_base):
    """The vendor's `Retry-After` when it sent one, else the exponential backoff."""

    def __init__(self, backoff: wait_base):
        self.backoff = backoff

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after
        return self.backoff(retry_state)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from APIs; the backoff applies


@with_config(spec=RuntimeConfiguration)
def runtime_settings(config: RuntimeConfiguration = ConfigValue) -> RuntimeConfiguration:
    """dlt's runtime configuration (retries, timeout), resolved from config and environment."""
    return config


class ApiClient:
    """One vendor API: a base URL, headers every request carries, and the retry policy.

    Each thread using the client has its own kept-alive connection (a libcurl handle serves
    one transfer at a time), so a source's resources can be read at once.
    """

    def __init__(self, source: str, base_url: str, headers: dict[str, str] | None = None,
                 basic_auth: tuple[str, str] | None = None):
        self.source = source
        self.base = base_url.rstrip("/") + "/"
        runtime = runtime_settings()
        self.attempts = max(int(runtime.request_max_attempts), 1)
        self.backoff = wait_exponential(multiplier=float(runtime.request_backoff_factor),
                                        max=float(runtime.request_max_retry_delay))
        self.retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=_wait_retry_after(self.backoff),
                                 retry=retry_if_exception_type(_Retryable), reraise=True)
        self.timeout = float(runtime.request_timeout)
        self.headers = dict(headers or {})
        if basic_auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
        # Read once: libcurl would otherwise consult the environment on every transfer.
        self.proxy = get_environ_proxies(self.base).get(urlsplit(self.base).scheme) or ""
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
        self._local = threading.local()

    def _new_handle(self) -> pycurl.Curl:
        self._local.curl = curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without signals, safe in threads
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(self.timeout * 1000))
        curl.setopt(pycurl.TIMEOUT_MS, int(self.timeout * 1000))
        curl.setopt(pycurl.PROXY, self.proxy)  # "" means none, whatever the environment says
        curl.setopt(pycurl.ACCEPT_ENCODING, "")  # any compression libcurl can decode
        if self.ca_bundle:
            curl.setopt(pycurl.CAINFO, self.ca_bundle)
        return curl

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.base + path_or_url

    def get(self, path_or_url: str, params: dict | None = None) -> Page:
        url = self.url(path_or_url)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        return self._request("GET", url)

    def post(self, path_or_url: str, body: Any) -> Page:
        return self._request("POST", self.url(path_or_url), orjson.dumps(body))

    def _request(self, method: str, url: str, body: bytes | None = None) -> Page:
        try:
            # The first attempt outside tenacity: most requests need no other, and its
            # bookkeeping would cost more than the request's own handling.
            status, data = self._attempt(method, url, body)
        except _Retryable as first:
            status, data = self._retry(first, method, url, body)
        if status >= 400:
            endpoint = urlsplit(url).path
            hint = HINTS.get(status, "the vendor kept failing after every retry" if status >= 500 else "")
            text = data[:300].decode("utf-8", "replace").strip()
            detail = "; ".join(part for part in (hint, f"response: {text}" if text else "") if part)
            raise SourceRequestError(self.source, method, endpoint, status, detail)
        try:
            return Page(simdjson.Parser().parse(data), data)
        except ValueError as exc:
            raise SourceRequestError(self.source, method, urlsplit(url).path, status,
                                     f"the body is not JSON ({exc})") from exc

    def _retry(self, first: _Retryable, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        """Attempts after a failed first one, as the retry policy says."""
        attempts = iter([first])

        def attempt() -> tuple[int, bytes]:
            failed = next(attempts, None)
            if failed is not None:  # replay the first attempt's outcome, so the policy counts it
                raise failed
            return self._attempt(method, url, body)

        try:
            return self.retrying(attempt)
        except _Retryable as exc:
            if exc.status is None:
                raise SourceRequestError(self.source, method, urlsplit(url).path, None,
                                         f"{exc.error} (after every retry)") from None
            return exc.status, exc.body

    def _attempt(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        curl = getattr(self._local, "curl", None) or self._new_handle()
        out, retry_after = io.BytesIO(), []

        def header(line: bytes) -> None:
            if line[:12].lower() == b"retry-after:":
                retry_after.append(line[12:].strip().decode("latin-1"))

        headers = [f"{k}: {v}" for k, v in self.headers.items()]
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEDATA, out)
        curl.setopt(pycurl.HEADERFUNCTION, header)
        if body is None:
            curl.setopt(pycurl.HTTPGET, 1)
        else:
            curl.setopt(pycurl.POSTFIELDS, body)
            headers.append("Content-Type: application/json")
        curl.setopt(pycurl.HTTPHEADER, headers)
        try:
            curl.perform()
        except pycurl.error as exc:
            # A dropped connection, a timeout, a body cut short: a fresh connection next time.
            code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
            curl.close()
            self._local.curl = None
            raise _Retryable(None, error=f"{message or 'transfer failed'} (curl error {code})") from None
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        data = out.getvalue()
        if status in RETRY_STATUS:
            raise _Retryable(status, data, _retry_after(retry_after[-1] if retry_after else None))
        return status, data


def explain(exc: BaseException) -> SourceRequestError | None:
    """The `SourceRequestError` at the root of a failed extraction, if one is."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SourceRequestError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
