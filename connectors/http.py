"""HTTP behaviour shared by the API connectors: retries, and errors a person can act on.

Retries are dlt's own (`dlt.sources.helpers.requests.Client`): 429, 5xx, dropped connections
and truncated bodies are retried with exponential backoff, waiting as long as a `Retry-After`
header asks. Attempts and backoff come from dlt's runtime configuration
(`runtime.request_max_attempts`, `request_backoff_factor`, `request_max_retry_delay`,
`request_timeout` in `.dlt/config.toml` or `RUNTIME__REQUEST_MAX_ATTEMPTS`, ...).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import requests
from dlt.sources.helpers.requests import Client


class SourceRequestError(RuntimeError):
    """A source's API kept failing (or refused us): names the source, endpoint and status."""

    def __init__(self, source: str, method: str, endpoint: str, status: int | None, detail: str):
        self.source, self.endpoint, self.status = source, endpoint, status
        answered = f"answered HTTP {status}" if status else "did not answer"
        super().__init__(f"{source}: {method} {endpoint} {answered}: {detail}")


def retrying_session(base_url: str) -> requests.Session:
    """A requests session with dlt's retry policy, configured from dlt's runtime settings.

    Proxy and CA-bundle settings come from the environment as usual (`HTTPS_PROXY`,
    `NO_PROXY`, `REQUESTS_CA_BUNDLE`, ...), but are read once for `base_url`: requests would
    otherwise scan the environment on every request, a tenth of a large extraction's time.
    """
    client = Client(raise_for_status=False)
    client.configure()
    session = client.session
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session


HINTS = {
    401: "check the credentials (dlt secrets or SOURCES__<SOURCE>__* variables)",
    403: "the credentials lack a permission or scope this endpoint needs",
    404: "check the base URL",
    429: "still rate limited after every retry; lower the load or raise runtime.request_max_attempts",
}


def explain(source: str, exc: BaseException) -> SourceRequestError | None:
    """Turn the HTTP error at the root of a failed extraction into a `SourceRequestError`."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, requests.RequestException) and exc.request is not None:
            request, response = exc.request, exc.response
            endpoint = urlsplit(request.url).path
            if response is not None:
                status = response.status_code
                hint = HINTS.get(status, "the vendor kept failing after every retry" if status >= 500 else "")
                body = response.text[:300].strip()
                detail = "; ".join(part for part in (hint, f"response: {body}" if body else "") if part)
                return SourceRequestError(source, request.method or "GET", endpoint, status, detail)
            return SourceRequestError(source, request.method or "GET", endpoint, None, f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return None
