"""The API connectors' HTTP: the platform's one client (`data_spine.http_client`, libcurl with
tenacity retries) set up the dlt way, and its failures said so a person can act on them.

Attempts, backoff and timeout are dlt's runtime settings (`runtime.request_max_attempts`,
`request_backoff_factor`, `request_max_retry_delay`, `request_timeout` in `.dlt/config.toml`,
or `RUNTIME__REQUEST_MAX_ATTEMPTS`, ...); a vendor request has no overall deadline. Every
answer is parsed as JSON (`Page.json`, simdjson's document). A request that fails for good
raises `SourceRequestError`, naming the source, the endpoint and the status, with a hint;
`explain` finds it at the root of a failed extraction.
"""

from __future__ import annotations

from dlt.common.configuration.inject import with_config
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.typing import ConfigValue

from data_spine.http_client import BodyError, HttpClient, HttpError, RequestPolicy, Response, StatusError, TransferError

# One answered vendor request: `json` (simdjson's document) and the `body` it was parsed from.
Page = Response

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


@with_config(spec=RuntimeConfiguration)
def runtime_settings(config: RuntimeConfiguration = ConfigValue) -> RuntimeConfiguration:
    """dlt's runtime configuration (retries, timeout), resolved from config and environment."""
    return config


def runtime_policy() -> RequestPolicy:
    """The request policy dlt's runtime settings give."""
    runtime = runtime_settings()
    return RequestPolicy(
        max_attempts=max(int(runtime.request_max_attempts), 1),
        backoff_seconds=float(runtime.request_backoff_factor),
        max_backoff_seconds=float(runtime.request_max_retry_delay),
        timeout_seconds=float(runtime.request_timeout),
    )


class ApiClient(HttpClient):
    """One vendor API: a base URL, headers every request carries, dlt's retry settings.

    `get` and `post_json` answer a `Page` or raise `SourceRequestError`. One client serves the
    threads of a source's resources at once (a connection each).
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        headers: dict[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
    ):
        super().__init__(base_url, headers, policy=runtime_policy(), basic_auth=basic_auth, parse_json=True)
        self.source = source

    def request(self, method: str, url: str, body: bytes | None = None) -> Page:
        try:
            return super().request(method, url, body)
        except HttpError as exc:
            raise source_error(self.source, exc) from (exc if isinstance(exc, BodyError) else None)


def source_error(source: str, exc: HttpError) -> SourceRequestError:
    """What a failed request says, for the person running `source`'s load."""
    if isinstance(exc, StatusError):
        hint = HINTS.get(exc.status, "the vendor kept failing after every retry" if exc.status >= 500 else "")
        text = exc.body[:300].decode("utf-8", "replace").strip()
        detail = "; ".join(part for part in (hint, f"response: {text}" if text else "") if part)
        return SourceRequestError(source, exc.method, exc.endpoint, exc.status, detail)
    if isinstance(exc, BodyError):
        return SourceRequestError(source, exc.method, exc.endpoint, exc.status, exc.detail)
    detail = exc.error if isinstance(exc, TransferError) else str(exc)
    return SourceRequestError(source, exc.method, exc.endpoint, None, f"{detail} (after every retry)")


def explain(exc: BaseException) -> SourceRequestError | None:
    """The `SourceRequestError` at the root of a failed extraction, if one is."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SourceRequestError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
