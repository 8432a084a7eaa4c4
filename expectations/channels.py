"""Where alerts go: a local JSONL log (always), a generic JSON webhook and Slack.

Webhook and Slack deliveries are retried with exponential backoff (tenacity) on connection
errors, timeouts, 429 and 5xx answers; a 4xx other than 429 is a configuration error and is
not retried. Settings come from the environment through the Dagster `alerts` resource
(`SPINE_ALERT_LOG`, `SPINE_ALERT_WEBHOOK_URL`, `SPINE_ALERT_SLACK_WEBHOOK_URL`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from expectations.alerts import Alert


class DeliveryError(RuntimeError):
    def __init__(self, channel: str, detail: str, retryable: bool):
        super().__init__(f"{channel}: {detail}")
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
    name: str = "http"

    def payload(self, alert: Alert) -> dict:
        raise NotImplementedError

    def send(self, alert: Alert) -> None:
        body = self.payload(alert)
        post = retry(
            retry=retry_if_exception(lambda e: getattr(e, "retryable", True)),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=30),
            reraise=True,
        )(self._post)
        post(body)

    def _post(self, body: dict) -> None:
        try:
            response = requests.post(self.url, json=body, timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            raise DeliveryError(self.name, f"POST failed: {exc}", retryable=True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise DeliveryError(self.name, f"answered HTTP {response.status_code}", retryable=True)
        if response.status_code >= 400:
            raise DeliveryError(self.name, f"answered HTTP {response.status_code}: {response.text[:200]}",
                                retryable=False)


@dataclass
class Webhook(_HttpChannel):
    """POSTs the alert as JSON (see expectations/README.md for the payload)."""

    name: str = "webhook"

    def payload(self, alert: Alert) -> dict:
        return {**alert.to_json(), "text": alert.text()}


@dataclass
class Slack(_HttpChannel):
    """A Slack incoming webhook: the message as text, with a colour bar by severity."""

    name: str = "slack"

    def payload(self, alert: Alert) -> dict:
        icon = ":white_check_mark:" if alert.status == "resolved" else ":rotating_light:"
        title = alert.text().splitlines()[0]
        return {
            "text": f"{icon} {title}: {alert.dataset} - {alert.what}",
            "attachments": [{
                "color": _COLOURS.get(alert.severity, "#999999"),
                "text": "\n".join(alert.text().splitlines()[1:]),
            }],
        }


_COLOURS = {"critical": "#b00020", "high": "#e8590c", "medium": "#f2c744", "info": "#2b8a3e"}
