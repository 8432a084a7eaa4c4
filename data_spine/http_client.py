"""The one HTTP client of the platform: every call it makes out (the vendor APIs the connectors
read, the alert webhook, Slack) goes through `HttpClient`.

Transfers go through libcurl (`pycurl`): a request costs a fifth of the CPU it costs in
`requests` or urllib3, whose pure-Python request and header handling was the larger part of a
big extraction, and libcurl waits for the server without holding Python's GIL, so the next
page can be on its way while the last one is processed (see `connectors.fast_path`). Each
thread using a client has its own kept-alive connection (a libcurl handle serves one transfer
at a time), so one client can serve several threads at once.

Retries are tenacity's: 429, any 5xx, refused or dropped connections, timeouts and truncated
bodies are tried again with exponential backoff (`backoff_seconds * 2 ** (attempt - 1)`, at
most `max_backoff_seconds`), waiting as long as a `Retry-After` header asks instead (seconds
or an HTTP date). Another 4xx is the caller's mistake (credentials, URL, payload) and is not
tried again. The first attempt runs outside tenacity: most requests need no other, and its
bookkeeping would cost more than the request's own handling.

Every client has a `RequestPolicy`; its defaults are the platform's one set, declared here
only:

    max_attempts         6     attempts in all, the first included
    backoff_seconds      1.0   wait before the second attempt, doubling after each
    max_backoff_seconds  60.0  longest wait between two attempts (a Retry-After may ask more)
    timeout_seconds      60.0  per attempt: connecting, sending and reading the whole answer
    max_wait_seconds     None  overall deadline of one request (attempts, their timeouts and
                               the waits between them together); None: none

With a deadline, an attempt gets at most what is left of it, and no attempt is started after
a wait that would pass it: a server that is down delays the caller by at most
`max_wait_seconds` (plus `MIN_ATTEMPT_SECONDS` at worst). The connectors take their policy
from dlt's runtime settings (`connectors.http`), alert delivery from the `SPINE_ALERT_*`
settings (`quality.alert_delivery`).

Proxy and CA-bundle settings come from the environment as for any HTTP client (`HTTPS_PROXY`,
`HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`), read once when
the client is made: libcurl would otherwise consult the environment on every transfer.

A request that fails for good raises an `HttpError`: `StatusError` (an answer of 400 or more,
after every retry for a retryable one), `TransferError` (no answer: refused, timed out, cut
short, after every retry) or `BodyError` (a client made with `parse_json` got an answer that
is not JSON). Each names the method and URL, and says whether another try later could work
(`retryable`).

This module is part of the project's floor: it imports nothing from the rest of it.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import os
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

import orjson
import pycurl
import simdjson
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential

# The shortest timeout an attempt gets near a deadline (libcurl reads 0 as "no timeout").
MIN_ATTEMPT_SECONDS = 0.1


@dataclass(frozen=True)
class RequestPolicy:
    """How hard a request tries: the platform's defaults (see the module doc)."""

    max_attempts: int = 6
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    timeout_seconds: float = 60.0
    max_wait_seconds: float | None = None


class Response(NamedTuple):
    """One answered request (status below 400).

    `json` is set by a client made with `parse_json`: simdjson's document (`pysimdjson`),
    read-only and dict-like (`get`, `[]`, `in`, `len`), of which only the values read become
    Python objects. Paging needs a cursor from each page, and building every record as a dict
    to find it cost more than the request; the records themselves are read from `body`.
    """

    status: int
    body: bytes
    json: Any = None


def retryable_status(status: int) -> bool:
    """The server is busy or briefly broken: worth another attempt."""
    return status == 429 or status >= 500


class HttpError(Exception):
    """A request that failed for good."""

    retryable = False

    def __init__(self, method: str, url: str, detail: str):
        super().__init__(f"{method} {url} {detail}")
        self.method, self.url = method, url

    @property
    def endpoint(self) -> str:
        """The URL's path (no host, no query: safe to show)."""
        return urlsplit(self.url).path


class StatusError(HttpError):
    """The server answered with a status of 400 or more (a retryable one after every retry)."""

    def __init__(self, method: str, url: str, status: int, body: bytes = b"", retry_after: float | None = None):
        super().__init__(method, url, f"answered HTTP {status}")
        self.status, self.body, self.retry_after = status, body, retry_after
        self.retryable = retryable_status(status)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


# libcurl errors whose cause is the socket's (`OS_ERRNO`): connecting, sending, receiving.
_SOCKET_ERRORS = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR})


class TransferError(HttpError):
    """No answer: the connection was refused or dropped, the attempt timed out, the body was
    cut short. `timeout`: the seconds the (last) attempt was given."""

    retryable = True

    def __init__(self, method: str, url: str, code: int, message: str, os_errno: int = 0, timeout: float = 0.0):
        self.code, self.message, self.os_errno, self.timeout = code, message, os_errno, timeout
        super().__init__(method, url, f"failed: {self.error}")

    @property
    def timed_out(self) -> bool:
        return self.code == pycurl.E_OPERATION_TIMEDOUT

    @property
    def error(self) -> str:
        """libcurl's own words: `Failed to connect to ... (curl error 7)`."""
        return f"{self.message or 'transfer failed'} (curl error {self.code})"

    @property
    def reason(self) -> str:
        """The root cause in a few words (`connection refused`), else libcurl's message."""
        if self.os_errno and self.code in _SOCKET_ERRORS:
            text = os.strerror(self.os_errno)
            return text[:1].lower() + text[1:]
        return self.message or f"curl error {self.code}"


class BodyError(HttpError):
    """The answer is not what the client expects (JSON)."""

    def __init__(self, method: str, url: str, status: int, detail: str):
        super().__init__(method, url, detail)
        self.status, self.detail = status, detail


class _wait_retry_after(wait_base):
    """The server's `Retry-After` when it sent one, else the exponential backoff."""

    def __init__(self, backoff: wait_base):
        self.backoff = backoff

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, StatusError) and exc.retry_after is not None:
            return exc.retry_after
        return self.backoff(retry_state)


class _stop_before_deadline(stop_base):
    """Stop rather than wait past the deadline (tenacity works the wait out before asking)."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, retry_state) -> bool:
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # an HTTP date
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None  # unreadable: the backoff applies


def environment_proxy(url: str) -> str:
    """The proxy the environment names for `url` ("" for none): `<scheme>_proxy` or
    `all_proxy`, unless `no_proxy` lists the host (a name, a domain suffix, an address or a
    network in CIDR notation, `*` for every host)."""
    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all") or ""
    host = parts.hostname
    if not proxy or not host:
        return ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        for entry in proxies.get("no", "").replace(" ", "").split(","):
            try:
                if entry and "/" in entry and address in ipaddress.ip_network(entry, strict=False):
                    return ""
            except ValueError:
                continue
    return "" if proxy_bypass_environment(host, proxies) else proxy


JSON, FORM = "application/json", "application/x-www-form-urlencoded"


class HttpClient:
    """Requests to one server: a base URL, headers every request carries, the request policy.

    `get`, `post_json`, `post_form` and `delete` answer a `Response` (status below 400) or raise
    an `HttpError`; a
    client made with `parse_json` parses every answer as JSON (`Response.json`). Headers are
    fixed when the client is made, and so is the proxy: the one the environment names for the
    base URL, used for every request of the client.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        *,
        policy: RequestPolicy = RequestPolicy(),
        basic_auth: tuple[str, str] | None = None,
        parse_json: bool = False,
    ):
        self.base_url = base_url
        self.base = base_url.rstrip("/") + "/"
        self.policy = policy
        self.attempts = max(int(policy.max_attempts), 1)
        self.backoff = wait_exponential(multiplier=float(policy.backoff_seconds), max=float(policy.max_backoff_seconds))
        self.timeout = float(policy.timeout_seconds)
        self.max_wait = None if policy.max_wait_seconds is None else float(policy.max_wait_seconds)
        self.retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=_wait_retry_after(self.backoff),
            retry=retry_if_exception_type((StatusError, TransferError)),
            reraise=True,
        )
        self.parse_json = parse_json
        self.headers = dict(headers or {})
        if basic_auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
        self._header_lines = [f"{k}: {v}" for k, v in self.headers.items()]
        # A body is sent at once: no `Expect: 100-continue` round trip for a large one.
        self._body_header_lines = {
            kind: [*self._header_lines, f"Content-Type: {kind}", "Expect:"] for kind in (JSON, FORM)
        }
        # Read once: libcurl would otherwise consult the environment on every transfer.
        self.proxy = environment_proxy(self.base)
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
        self._local = threading.local()

    def url(self, path_or_url: str) -> str:
        """An absolute URL as it is, a path relative to the base URL."""
        return path_or_url if "://" in path_or_url else self.base + path_or_url

    def get(self, path_or_url: str, params: dict | None = None) -> Response:
        url = self.url(path_or_url)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        return self.request("GET", url)

    def post_json(self, path_or_url: str, body: Any) -> Response:
        """POST `body` as JSON (`Content-Type: application/json`)."""
        return self.request("POST", self.url(path_or_url), orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))

    def post_form(self, path_or_url: str, fields: dict[str, str]) -> Response:
        """POST `fields` form-encoded (`application/x-www-form-urlencoded`: Stripe's v1 API)."""
        return self.request("POST", self.url(path_or_url), urlencode(fields).encode(), FORM)

    def delete(self, path_or_url: str) -> Response:
        return self.request("DELETE", self.url(path_or_url))

    def request(self, method: str, url: str, body: bytes | None = None, content_type: str = JSON) -> Response:
        """One request to an absolute URL, tried again as the policy says: a DELETE, a POST of
        `body` (of `content_type`), or a GET."""
        deadline = None if self.max_wait is None else time.monotonic() + self.max_wait
        try:
            status, data = self._attempt(method, url, body, self._time_left(deadline), content_type)
        except (StatusError, TransferError) as first:
            status, data = self._retry(first, method, url, body, deadline, content_type)
        if status >= 400:
            raise StatusError(method, url, status, data)
        if not self.parse_json:
            return Response(status, data)
        try:
            return Response(status, data, simdjson.Parser().parse(data))
        except ValueError as exc:
            raise BodyError(method, url, status, f"the body is not JSON ({exc})") from exc

    def _time_left(self, deadline: float | None) -> float | None:
        """The timeout of an attempt starting now: None for the client's own (no deadline)."""
        if deadline is None:
            return None
        return max(min(self.timeout, deadline - time.monotonic()), MIN_ATTEMPT_SECONDS)

    def _retry(
        self,
        first: HttpError,
        method: str,
        url: str,
        body: bytes | None,
        deadline: float | None,
        content_type: str = JSON,
    ) -> tuple[int, bytes]:
        """Attempts after a failed first one, as the policy says; raises the last attempt's
        error when every attempt failed."""
        attempts = iter([first])

        def attempt() -> tuple[int, bytes]:
            failed = next(attempts, None)
            if failed is not None:  # replay the first attempt's outcome, so the policy counts it
                raise failed
            return self._attempt(method, url, body, self._time_left(deadline), content_type)

        retrying = self.retrying
        if deadline is not None:
            retrying = retrying.copy(stop=stop_after_attempt(self.attempts) | _stop_before_deadline(deadline))
        return retrying(attempt)

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

    def _attempt(
        self, method: str, url: str, body: bytes | None, timeout: float | None = None, content_type: str = JSON
    ) -> tuple[int, bytes]:
        """One transfer: (status, body) of an answer not worth retrying; raises `StatusError`
        for a retryable status, `TransferError` when there was no (whole) answer. `timeout`:
        this attempt's, when not the client's own."""
        curl = getattr(self._local, "curl", None) or self._new_handle()
        out, retry_after = io.BytesIO(), []

        def header(line: bytes) -> None:
            if line[:12].lower() == b"retry-after:":
                retry_after.append(line[12:].strip().decode("latin-1"))

        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEDATA, out)
        curl.setopt(pycurl.HEADERFUNCTION, header)
        if body is None:
            curl.setopt(pycurl.HTTPGET, 1)
            curl.setopt(pycurl.HTTPHEADER, self._header_lines)
        else:
            curl.setopt(pycurl.POSTFIELDS, body)
            curl.setopt(pycurl.HTTPHEADER, self._body_header_lines[content_type])
        # A thread's connection is reused: the method is set (or cleared) on every request.
        if method == "DELETE":
            curl.setopt(pycurl.CUSTOMREQUEST, "DELETE")
        else:
            curl.unsetopt(pycurl.CUSTOMREQUEST)
        if timeout is not None:
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(timeout * 1000))
            curl.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
        try:
            curl.perform()
        except pycurl.error as exc:
            # A refused or dropped connection, a timeout, a body cut short: a fresh connection next time.
            code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
            os_errno = curl.getinfo(pycurl.OS_ERRNO)
            curl.close()
            self._local.curl = None
            given = self.timeout if timeout is None else timeout
            raise TransferError(method, url, code, message, os_errno, given) from None
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        data = out.getvalue()
        if retryable_status(status):
            raise StatusError(method, url, status, data, _retry_after(retry_after[-1] if retry_after else None))
        return status, data
