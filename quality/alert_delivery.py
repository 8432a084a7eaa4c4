"""Where alerts go: a local JSONL log (always), a generic JSON webhook and Slack.

Webhook and Slack deliveries go through the platform's HTTP client (`data_spine.http_client`):
retried with exponential backoff on connection errors, timeouts, 429 and 5xx answers (waiting
as a `Retry-After` asks), within a bounded wait per delivery (`max_wait_seconds`: a channel
that is down delays a dispatch by at most that, since the dispatch then leaves the channel's
deliveries owed); a 4xx other than 429 is a configuration error and is not retried.
Settings come from the environment through the Dagster `alerts` resource (`SPINE_ALERT_LOG`,
`SPINE_ALERT_WEBHOOK_URL`, `SPINE_ALERT_SLACK_WEBHOOK_URL`, `SPINE_ALERT_MAX_ATTEMPTS`,
`SPINE_ALERT_TIMEOUT_SECONDS`, `SPINE_ALERT_MAX_WAIT_SECONDS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_spine.http_client import HttpClient, RequestPolicy, StatusError, TransferError
from expectations.escaping import slack_text
from quality.alert_conditions import Alert


class DeliveryError(RuntimeError):
    def __init__(self, channel: str, detail: str, retryable: bool):
        super().__init__(f"{channel}: {detail}")
        self.detail = detail
        self.retryable = retryable


@dataclass
class JsonlLog:
    """One JSON object per line: the alert, plus its message as text."""

    path: Path
    name: str = "log"

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**alert.to_json(), "text": alert.text()}) + "\n")


@dataclass
class _HttpChannel:
    """POSTs a JSON payload per alert. Unset, a setting is the HTTP client's default
    (`data_spine.http_client.RequestPolicy`); the `alerts` resource sets them all."""

    url: str
    timeout_seconds: float | None = None  # per attempt
    max_attempts: int | None = None
    backoff_seconds: float | None = None
    max_wait_seconds: float | None = None  # attempts, their timeouts and the waits between them, together
    name: str = "http"
    _client: HttpClient | None = field(default=None, init=False, repr=False, compare=False)

    def payload(self, alert: Alert) -> dict:
        raise NotImplementedError

    def client(self) -> HttpClient:
        """The channel's client, made when first needed (the environment's proxy read then)."""
        if self._client is None:
            given = {
                "timeout_seconds": self.timeout_seconds,
                "max_attempts": self.max_attempts,
                "backoff_seconds": self.backoff_seconds,
                "max_wait_seconds": self.max_wait_seconds,
            }
            policy = RequestPolicy(**{k: v for k, v in given.items() if v is not None})
            self._client = HttpClient(self.url, policy=policy)
        return self._client

    def send(self, alert: Alert) -> None:
        try:
            self.client().post_json(self.url, self.payload(alert))
        except TransferError as exc:
            detail = f"POST got no answer within {exc.timeout:.3g} s" if exc.timed_out else f"POST failed: {exc.reason}"
            raise DeliveryError(self.name, detail, retryable=True) from exc
        except StatusError as exc:
            if exc.retryable:
                raise DeliveryError(self.name, f"answered HTTP {exc.status}", retryable=True) from exc
            raise DeliveryError(self.name, f"answered HTTP {exc.status}: {exc.text[:200]}", retryable=False) from exc


@dataclass
class Webhook(_HttpChannel):
    """POSTs the alert as JSON (see quality/README.md for the payload)."""

    name: str = "webhook"

    def payload(self, alert: Alert) -> dict:
        return {**alert.to_json(), "text": alert.text()}


@dataclass
class Slack(_HttpChannel):
    """A Slack incoming webhook: the message as text, with a colour bar by severity. Slack reads
    the text as mrkdwn, so what it quotes is escaped."""

    name: str = "slack"

    def payload(self, alert: Alert) -> dict:
        icon = ":white_check_mark:" if alert.status == "resolved" else ":rotating_light:"
        title = alert.text().splitlines()[0]
        return {
            "text": f"{icon} {slack_text(title)}: {slack_text(alert.dataset)} - {slack_text(alert.what)}",
            "attachments": [
                {
                    "color": _COLOURS.get(alert.severity, "#999999"),
                    "text": slack_text("\n".join(alert.text().splitlines()[1:])),
                    # A delivery owed for a while arrives late: say when it was raised, and which
                    # alert of the log it is.
                    "footer": f"data-spine alert {alert.id}, raised {alert.sent_at}",
                }
            ],
        }


_COLOURS = {"critical": "#b00020", "high": "#e8590c", "medium": "#f2c744", "info": "#2b8a3e"}
