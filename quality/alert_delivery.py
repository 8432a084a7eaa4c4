"""Where alerts go: a local JSONL log (always), a generic JSON webhook and Slack.

Webhook and Slack deliveries are retried with exponential backoff (tenacity) on connection
errors, timeouts, 429 and 5xx answers, within a bounded wait per delivery (`max_wait_seconds`:
a channel that is down delays a dispatch by at most that, since the dispatch then leaves the
channel's deliveries owed); a 4xx other than 429 is a configuration error and is not retried.
Settings come from the environment through the Dagster `alerts` resource (`SPINE_ALERT_LOG`,
`SPINE_ALERT_WEBHOOK_URL`, `SPINE_ALERT_SLACK_WEBHOOK_URL`, `SPINE_ALERT_MAX_ATTEMPTS`,
`SPINE_ALERT_TIMEOUT_SECONDS`, `SPINE_ALERT_MAX_WAIT_SECONDS`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, stop_before_delay, wait_exponential

from quality.alert_conditions import Alert
from expectations.escaping import slack_text


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
    url: str
    timeout_seconds: float = 10.0
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    max_wait_seconds: float = 10.0  # attempts, their timeouts and the waits between them, together
    name: str = "http"

    def payload(self, alert: Alert) -> dict:
        raise NotImplementedError

    def send(self, alert: Alert) -> None:
        body = self.payload(alert)
        deadline = time.monotonic() + self.max_wait_seconds
        post = retry(
            retry=retry_if_exception(lambda e: getattr(e, "retryable", True)),
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_wait_seconds),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=30),
            reraise=True,
        )(self._post)
        post(body, deadline)

    def _post(self, body: dict, deadline: float) -> None:
        # The last attempt gets what is left of the wait, so a silent host cannot stretch it.
        timeout = max(min(self.timeout_seconds, deadline - time.monotonic()), 0.1)
        try:
            response = requests.post(self.url, json=body, timeout=timeout)
        except requests.Timeout as exc:
            raise DeliveryError(self.name, f"POST got no answer within {timeout:.3g} s", retryable=True) from exc
        except requests.RequestException as exc:
            raise DeliveryError(self.name, f"POST failed: {_reason(exc)}", retryable=True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise DeliveryError(self.name, f"answered HTTP {response.status_code}", retryable=True)
        if response.status_code >= 400:
            raise DeliveryError(self.name, f"answered HTTP {response.status_code}: {response.text[:200]}",
                                retryable=False)


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
            "attachments": [{
                "color": _COLOURS.get(alert.severity, "#999999"),
                "text": slack_text("\n".join(alert.text().splitlines()[1:])),
                # A delivery owed for a while arrives late: say when it was raised, and which
                # alert of the log it is.
                "footer": f"data-spine alert {alert.id}, raised {alert.sent_at}",
            }],
        }


def _reason(exc: BaseException) -> str:
    """The root cause of a failed request (`connection refused`), not urllib3's wrapping of it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    return str(exc)[:200]


_COLOURS = {"critical": "#b00020", "high": "#e8590c", "medium": "#f2c744", "info": "#2b8a3e"}
