"""HTTP shared by the API connectors: kept-alive connections, retries, errors a person can act on.

Requests go through urllib3 directly, with its `Retry` policy: 429, 5xx, dropped connections
and truncated bodies are retried with exponential backoff, waiting as long as a `Retry-After`
header asks. `requests` (and dlt's client on top of it) spends about a millisecond of CPU per
request preparing and merging settings: at a hundred records a page that was a third of a large
extraction. Attempts, backoff and timeout are still dlt's runtime settings
(`runtime.request_max_attempts`, `request_backoff_factor`, `request_max_retry_delay`,
`request_timeout` in `.dlt/config.toml`, or `RUNTIME__REQUEST_MAX_ATTEMPTS`, ...).

Proxy and CA-bundle settings come from the environment as for any HTTP client (`HTTPS_PROXY`,
`NO_PROXY`, `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`), read once when the client is made.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
import urllib3
from dlt.common.configuration.inject import with_config
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.typing import ConfigValue
from requests.utils import get_environ_proxies

# Statuses worth another attempt: the vendor is busy or briefly broken.
RETRY_STATUS = (429, 500, 502, 503, 504)
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
    """One answered request: the parsed JSON and the bytes it was parsed from."""

    json: dict
    body: bytes


@with_config(spec=RuntimeConfiguration)
def runtime_settings(config: RuntimeConfiguration = ConfigValue) -> RuntimeConfiguration:
    """dlt's runtime configuration (retries, timeout), resolved from config and environment."""
    return config


class ApiClient:
    """One vendor API: a base URL, headers every request carries, and the retry policy."""

    def __init__(self, source: str, base_url: str, headers: dict[str, str] | None = None,
                 basic_auth: tuple[str, str] | None = None, connections: int = 4):
        self.source = source
        self.base = base_url.rstrip("/") + "/"
        runtime = runtime_settings()
        self.retry = urllib3.Retry(
            total=max(int(runtime.request_max_attempts) - 1, 0),
            backoff_factor=float(runtime.request_backoff_factor),
            backoff_max=float(runtime.request_max_retry_delay),
            status_forcelist=RETRY_STATUS,
            # Every request the connectors send reads (searches and batch reads are POSTs).
            allowed_methods=None,
            respect_retry_after_header=True,
            # The last answer comes back instead of an exception, so its body reaches the error.
            raise_on_status=False,
        )
        timeout = float(runtime.request_timeout)
        self.headers = dict(headers or {})
        if basic_auth:
            self.headers.update(urllib3.make_headers(basic_auth=":".join(basic_auth)))
        self.proxy = get_environ_proxies(self.base).get(urlsplit(self.base).scheme)
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
        options: dict[str, Any] = dict(
            num_pools=4, maxsize=connections, retries=self.retry,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        if self.ca_bundle:
            options["ca_certs"] = self.ca_bundle
        self.pool = urllib3.ProxyManager(self.proxy, **options) if self.proxy else urllib3.PoolManager(**options)

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.base + path_or_url

    def get(self, path_or_url: str, params: dict | None = None) -> Page:
        return self._request("GET", self.url(path_or_url), fields=params)

    def post(self, path_or_url: str, body: Any) -> Page:
        return self._request("POST", self.url(path_or_url), body=orjson.dumps(body),
                             headers={"Content-Type": "application/json"})

    def _request(self, method: str, url: str, headers: dict | None = None, **kwargs) -> Page:
        endpoint = urlsplit(url).path
        try:
            response = self.pool.request(method, url, headers={**self.headers, **(headers or {})}, **kwargs)
        except urllib3.exceptions.MaxRetryError as exc:
            raise SourceRequestError(self.source, method, endpoint, None,
                                     f"{type(exc.reason).__name__}: {exc.reason} (after every retry)") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise SourceRequestError(self.source, method, endpoint, None, f"{type(exc).__name__}: {exc}") from exc
        status, body = response.status, response.data
        if status >= 400:
            hint = HINTS.get(status, "the vendor kept failing after every retry" if status >= 500 else "")
            text = body[:300].decode("utf-8", "replace").strip()
            detail = "; ".join(part for part in (hint, f"response: {text}" if text else "") if part)
            raise SourceRequestError(self.source, method, endpoint, status, detail)
        try:
            return Page(orjson.loads(body), body)
        except orjson.JSONDecodeError as exc:
            raise SourceRequestError(self.source, method, endpoint, status, f"the body is not JSON ({exc})") from exc


def explain(exc: BaseException) -> SourceRequestError | None:
    """The `SourceRequestError` at the root of a failed extraction, if one is."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SourceRequestError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
