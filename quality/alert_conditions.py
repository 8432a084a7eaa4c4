"""Alerts that reach someone: what broke, how much, since when, why it may have, who acts.

A *condition* is one thing that can be wrong, with a stable key and a state (`ok`, `warn`,
`fail`): a blocking check of an entity, the age of a source's or mart's data, the time since a
source or mart was last loaded (Dagster's freshness policies), a raw table's volume, a
source's schema. `dispatch` compares the conditions with what was last announced and sends an
alert only when a condition's state changes: a new problem fires once, a worse state
(warn → fail) fires again, a return to `ok` sends a resolved message, and evaluating the
same state again sends nothing. What was announced is kept in a small JSON file beside the
alert log, under a file lock, so the Dagster sensor and `spine run` never announce twice.
Deliveries that fail after their retries stay pending and are tried again on the next
dispatch; channels that already have an alert never get it twice.

The message follows the governance reference's alert: dataset, issue, how many, since when,
severity, possible causes, action, owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from expectations.freshness_windows import STALE_ACTION, STALE_CAUSES, Freshness, by_check_name
from expectations.suite import DATA_ENG, Suite
from quality.source_monitors import Drift, VolumeReading

OK = "ok"
SEVERITY = {
    "blocking_check": "critical",
    "data_freshness": "high",
    "load_freshness": "high",
    "volume": "high",
    "schema_drift": "medium",
    "step_failure": "high",
    "run_died": "high",
    "rejected_file": "high",
    # A data-subject request past its deadline: the escalation (60 h) is critical.
    "dsr_sla": "critical",
}
# A warning is `medium` unless its kind says otherwise: a request that has waited 48 hours is
# already late for its owner.
WARN_SEVERITY = {"dsr_sla": "high"}


@dataclass(frozen=True)
class Condition:
    key: str  # stable identity, e.g. `blocking_check:customer:customer_id_unique`
    kind: str  # blocking_check | data_freshness | load_freshness | volume | schema_drift
    state: str  # ok | warn | fail
    dataset: str
    what: str
    how_many: str = ""
    since: str | None = None  # ISO 8601, UTC: when the problem started, if known
    causes: tuple[str, ...] = ()
    owner: str = DATA_ENG
    action: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.state != OK

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "causes": list(self.causes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        return cls(**{**data, "causes": tuple(data.get("causes", ()))})


@dataclass(frozen=True)
class Alert:
    """One message about a condition: it started (or got worse), or it is resolved."""

    id: str
    key: str
    status: str  # firing | resolved
    kind: str
    severity: str  # critical | high | medium | info (resolved)
    state: str
    dataset: str
    what: str
    how_many: str
    since: str | None
    likely_causes: list[str]
    owner: str
    suggested_action: str
    details: dict[str, Any]
    sent_at: str

    def to_json(self) -> dict[str, Any]:
        return {"source": "data-spine", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(**{k: v for k, v in data.items() if k != "source"})

    def text(self) -> str:
        """The plain-text message (alert log, Slack)."""
        if self.status == "resolved":
            lines = [f"RESOLVED: {self.dataset}", f"Issue: {self.what}"]
            if self.since:
                lines.append(f"Was failing since: {_human(self.since)}")
            lines += [
                f"Now: {self.how_many}" if self.how_many else "Now: back within its limits",
                f"Owner: {self.owner}",
            ]
            return "\n".join(lines)
        lines = [f"DATA QUALITY ALERT ({self.severity.upper()})", f"Dataset: {self.dataset}", f"Issue: {self.what}"]
        if self.how_many:
            lines.append(f"How many: {self.how_many}")
        if self.since:
            lines.append(f"Since: {_human(self.since)}")
        if self.likely_causes:
            lines.append("Possible causes:")
            lines += [f"  - {cause}" for cause in self.likely_causes]
        lines += [f"Action: {self.suggested_action}", f"Owner: {self.owner}"]
        return "\n".join(lines)


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


# --- conditions -----------------------------------------------------------------------------


def audit_conditions(suite: Suite, results: Iterable[Any], failing_since: dict[str, datetime]) -> list[Condition]:
    """Every blocking check and every freshness window of the suite, from one audit's results
    (`runner.Result`s, or result rows as dicts)."""
    by_name = {_field(r, "check_name"): r for r in results}
    windows = by_check_name()
    conditions = []
    for check in suite.checks:
        result = by_name.get(check.name)
        if result is None:
            continue
        failed = not _field(result, "success")
        since = failing_since.get(check.name)
        sample = json.loads(_field(result, "sample_unexpected") or "[]")
        if check.severity == "blocking":
            conditions.append(
                Condition(
                    key=f"blocking_check:{suite.entity}:{check.name}",
                    kind="blocking_check",
                    state="fail" if failed else OK,
                    dataset=f"{suite.entity} ({_field(result, 'table_name')})",
                    what=f"blocking check failed: {check.description}",
                    how_many=_how_many(result) if failed else "",
                    since=utc_iso(since) if failed and since else None,
                    causes=check.likely_causes,
                    owner=check.owner,
                    action=check.suggested_action
                    + f" Until it passes, serving keeps the last good {suite.entity} data.",
                    details={
                        "check": check.name,
                        "dimension": check.dimension,
                        "expectation": check.expectation,
                        "column": check.column,
                        "sample": sample,
                        "run_id": _field(result, "run_id"),
                    },
                )
            )
        elif check.name in windows:
            window = windows[check.name]
            age = next((s.get("age_hours") for s in sample if isinstance(s, dict)), None) if failed else None
            state = window.state(age) if failed else OK
            conditions.append(
                data_freshness_condition(window, state, age, _field(result, "as_of"), error=_field(result, "error"))
            )
    return conditions


def data_freshness_condition(
    window: Freshness, state: str, age_hours: float | None, as_of: datetime, error: str | None = None
) -> Condition:
    since = None
    if state != OK and age_hours is not None and age_hours != float("inf"):
        limit = window.fail_hours if state == "fail" else window.warn_hours
        since = utc_iso(as_of + timedelta(hours=limit - age_hours))  # the newest data, plus the window
    age = "no data at all" if age_hours in (None, float("inf")) else f"newest data {age_hours:.1f} h old"
    if error:
        age = f"the check could not run ({error})"
    return Condition(
        key=f"data_freshness:{window.key}",
        kind="data_freshness",
        state=state,
        dataset=f"{window.kind} {window.name} ({window.relation})",
        what=f"data older than its freshness window (warn after {window.warn_hours:g} h, fail after "
        f"{window.fail_hours:g} h)",
        how_many=f"{age} at the as-of time {as_of:%Y-%m-%d %H:%M} UTC" if state != OK else "",
        since=since,
        causes=STALE_CAUSES[window.kind],
        owner=window.owner,
        action=STALE_ACTION[window.kind],
        details={
            "window": window.key,
            "age_hours": age_hours,
            "warn_hours": window.warn_hours,
            "fail_hours": window.fail_hours,
        },
    )


def load_freshness_condition(asset: str, window: Freshness, state: str, since: datetime | None) -> Condition:
    """Dagster's freshness policy for an asset: time since its last successful load or build."""
    return Condition(
        key=f"load_freshness:{asset}",
        kind="load_freshness",
        state=state,
        dataset=f"{window.kind} {window.name} (Dagster asset {asset})",
        what=f"not loaded within its window (warn after {window.warn_hours:g} h, fail after "
        f"{window.fail_hours:g} h since the last successful run)",
        since=utc_iso(since) if since and state != OK else None,
        causes=("the daily schedule or the landing-folder sensor is off", "its last runs failed"),
        owner=DATA_ENG,
        action="Open the asset in the Dagster UI: check its latest runs and the schedule and sensor status.",
        details={"asset": asset, "window": window.key},
    )


def volume_condition(reading: VolumeReading) -> Condition:
    how_many = ""
    if reading.anomalous and reading.average is not None:
        how_many = (
            f"{reading.rows:,} rows against an average of {reading.average:,.0f} over the last "
            f"{reading.readings} loads ({reading.deviation:+.0%})"
        )
    return Condition(
        key=f"volume:{reading.table}",
        kind="volume",
        state="fail" if reading.anomalous else OK,
        dataset=f"source {reading.source} ({reading.table})",
        what="row count far from its recent average",
        how_many=how_many,
        since=utc_iso(reading.measured_at) if reading.measured_at and reading.anomalous else None,
        causes=(
            "a full reload that returned fewer records (an outage, a changed filter, lost permissions)",
            "a table emptied, or rows loaded twice",
        ),
        owner=DATA_ENG,
        action="Compare with the source system's own count and check the connector's last run.",
        details={"rows": reading.rows, "average": reading.average, "readings": reading.readings},
    )


def drift_condition(drift: Drift) -> Condition:
    listed = ", ".join(
        f"{c.table}" + (f".{c.column} ({c.data_type})" if c.column else " (new table)") for c in drift.changes[:8]
    )
    return Condition(
        key=f"schema_drift:{drift.source}",
        kind="schema_drift",
        state="warn" if drift.drifted else OK,
        dataset=f"source {drift.source}",
        what="the source's schema changed in its latest load",
        how_many=f"{len(drift.changes)} change(s): {listed}" if drift.drifted else "",
        since=_load_time(drift.load_id) if drift.drifted else None,
        causes=(
            "the vendor added or renamed a field, or changed its type",
            "a new API version, or a client sending a new property",
        ),
        owner=DATA_ENG,
        action="Review the new columns in the raw table; model them in staging if they matter, or pin "
        "the source's API version. A type change lands in a `__v_<type>` column beside the old one.",
        details={"load_id": drift.load_id, "changes": [asdict(c) for c in drift.changes]},
    )


def rejected_file_condition(
    source: str, name: str, reason: str, set_aside_in: str, since: str | None = None, state: str = "fail"
) -> Condition:
    """A landing file that could not be read at all and was set aside (`state` ok once it is gone
    from the rejected folder: deleted, or fixed and put back)."""
    return Condition(
        key=f"rejected_file:{source}:{name}",
        kind="rejected_file",
        state=state,
        dataset=f"source {source} (landing file {name})",
        what="a landing file could not be read and was set aside; the other files loaded",
        how_many=f"1 file, none of its events loaded: {reason}" if state != OK else "",
        since=since if state != OK else None,
        causes=(
            "the collector wrote something that is not gzip-compressed JSON lines",
            "the file was cut short: a transfer or a disk that failed, or a file dropped before it was "
            "completely written",
            "the pipeline may not read the file (permissions)",
        ),
        owner=DATA_ENG,
        action=f"Look at {set_aside_in} and its .reason.txt. Have the collector deliver the file again into the "
        "landing folder (it loads like a new file), then delete the set-aside copy; deleting it also "
        "resolves this alert.",
        details={"file": name, "reason": reason, "set_aside_in": set_aside_in},
    )


# --- dispatch -------------------------------------------------------------------------------


class AlertStore:
    """What was announced per condition, deliveries still owed and set aside, and each
    channel's last outcome, in one JSON file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            yield state
            self.save(state)

    def read(self) -> dict[str, Any]:
        """The state as last saved (saves replace the file whole, so no lock is needed to read)."""
        state = json.loads(self.path.read_text()) if self.path.exists() else {}
        for key, empty in (("conditions", {}), ("undelivered", []), ("undeliverable", []), ("channels", {})):
            state.setdefault(key, empty)
        return state

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def delivery(self, configured: Iterable[str] = ()) -> dict[str, ChannelDelivery]:
        """Each channel's delivery state as saved: what it is owed and since when, what was set
        aside, its last error and last delivery."""
        return delivery_state(self.read(), configured)


@dataclass
class ChannelDelivery:
    """Where one channel stands. `delivered` and `set_aside` count this dispatch only; the
    rest is the saved state after it."""

    channel: str
    configured: bool = True  # by the process that reports (owed deliveries wait for one that is)
    delivered: int = 0
    set_aside: int = 0
    owed: int = 0
    owed_since: str | None = None  # when the oldest owed alert was raised
    undeliverable: int = 0  # refused outright (4xx) since the state began: never retried
    delivered_total: int = 0
    last_delivered_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None

    @property
    def status(self) -> str:
        return "owed" if self.owed else "delivered"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    def describe(self) -> str:
        """One clause for a person, e.g. `slack delivered 0, 4 owed since 2026-12-06 06:40 UTC
        (POST failed: connection refused)`."""
        text = f"{self.channel} delivered {self.delivered}"
        if self.owed:
            text += f", {self.owed} owed since {_human(self.owed_since)}"
            if self.last_error:
                text += f" ({self.last_error})"
            if not self.configured:
                text += ", waiting for a process that has this channel configured"
        if self.set_aside:
            text += f", {self.set_aside} refused and set aside ({self.last_error})"
        return text


@dataclass
class Dispatch:
    """What one dispatch did: the alerts it raised and where each channel stands after it."""

    raised: list[Alert]
    delivery: dict[str, ChannelDelivery]

    @property
    def owed(self) -> int:
        return sum(d.owed for d in self.delivery.values())

    def describe(self, raised: str = "raised") -> str:
        """`4 raised; log delivered 4; slack delivered 0, 4 owed since ...`, with what happens next
        when something is owed."""
        text = "; ".join([f"{len(self.raised)} {raised}", *(d.describe() for d in self.delivery.values())])
        return text + (", retried by the next run or the alerts sensor" if self.owed else "; nothing owed")


def delivery_state(state: dict[str, Any], configured: Iterable[str] = ()) -> dict[str, ChannelDelivery]:
    """Per channel, from an `AlertStore`'s state: the channels configured, then any other that
    is owed something or was ever tried."""
    configured = list(configured)
    names = [
        *configured,
        *sorted(
            {name for entry in state.get("undelivered", []) for name in entry["channels"]}
            | {e["channel"] for e in state.get("undeliverable", [])}
            | set(state.get("channels", {}))
        ),
    ]
    report: dict[str, ChannelDelivery] = {}
    for name in dict.fromkeys(names):
        owed = [e["alert"]["sent_at"] for e in state.get("undelivered", []) if name in e["channels"]]
        saved = state.get("channels", {}).get(name, {})
        report[name] = ChannelDelivery(
            channel=name,
            configured=name in configured,
            owed=len(owed),
            owed_since=min(owed, default=None),
            undeliverable=sum(e["channel"] == name for e in state.get("undeliverable", [])),
            delivered_total=saved.get("delivered", 0),
            last_delivered_at=saved.get("last_delivered_at"),
            last_error=saved.get("last_error"),
            last_error_at=saved.get("last_error_at"),
        )
    return report


def dispatch(
    conditions: Iterable[Condition],
    store: AlertStore,
    channels: list[Channel],
    now: datetime | None = None,
) -> Dispatch:
    """Announce every change of state since the last dispatch, and deliver what is owed;
    returns the alerts this dispatch raised and where each channel stands.

    Decisions are saved before anything is sent, and each delivery as it succeeds, so an
    interrupted dispatch leaves them owed rather than forgotten or sent twice. A channel that
    fails is not tried again in this dispatch (its deliveries wait for the next one); one that
    refuses the request outright (4xx) will not take it later either, so those are set aside
    in `undeliverable` with the error instead of being retried forever. Deliveries owed to a
    channel this process has not configured wait for one that has."""
    now = now or datetime.now(UTC)
    raised: list[Alert] = []
    by_name = {c.name: c for c in channels}
    delivered = dict.fromkeys(by_name, 0)
    set_aside = dict.fromkeys(by_name, 0)
    with store.locked() as state:
        for condition in conditions:
            previous = state["conditions"].get(condition.key, {"state": OK})
            if condition.state == previous["state"]:
                continue
            if condition.firing:
                # Worse (warn -> fail) or better (fail -> warn) but still wrong: the problem
                # started when it was first announced.
                since = previous.get("since") or condition.since
                alert = _alert(replace(condition, since=since), "firing", now)
                state["conditions"][condition.key] = {
                    "state": condition.state,
                    "alert_id": alert.id,
                    "since": since or alert.sent_at,
                    "dataset": condition.dataset,
                    "what": condition.what,
                    "owner": condition.owner,
                    "kind": condition.kind,
                }
            else:
                resolved = replace(
                    condition,
                    dataset=previous.get("dataset", condition.dataset),
                    what=previous.get("what", condition.what),
                    since=previous.get("since"),
                )
                alert = _alert(resolved, "resolved", now)
                state["conditions"].pop(condition.key, None)
            state["undelivered"].append({"alert": alert.to_json(), "channels": sorted(by_name)})
            raised.append(alert)
        store.save(state)
        down: set[str] = set()
        for entry in list(state["undelivered"]):
            alert = Alert.from_json(entry["alert"])
            for name in list(entry["channels"]):
                channel = by_name.get(name)
                if channel is None or name in down:
                    continue
                outcome = state["channels"].setdefault(name, {})
                try:
                    channel.send(alert)
                except Exception as exc:  # noqa: BLE001 - a channel that is down must not stop the others
                    outcome.update(last_error=getattr(exc, "detail", str(exc)), last_error_at=utc_iso(now))
                    if getattr(exc, "retryable", True):
                        down.add(name)
                        store.save(state)
                        continue
                    state["undeliverable"].append(
                        {"alert": entry["alert"], "channel": name, "error": str(exc), "at": utc_iso(now)}
                    )
                    set_aside[name] += 1
                else:
                    delivered[name] += 1
                    outcome.update(delivered=outcome.get("delivered", 0) + 1, last_delivered_at=utc_iso(now))
                entry["channels"].remove(name)
                if not entry["channels"]:
                    state["undelivered"].remove(entry)
                store.save(state)
        report = delivery_state(state, by_name)
    for name, channel_report in report.items():
        channel_report.delivered, channel_report.set_aside = delivered.get(name, 0), set_aside.get(name, 0)
    return Dispatch(raised, report)


def _alert(condition: Condition, status: str, now: datetime) -> Alert:
    return Alert(
        id=uuid.uuid4().hex,
        key=condition.key,
        status=status,
        kind=condition.kind,
        severity=(
            "info"
            if status == "resolved"
            else WARN_SEVERITY.get(condition.kind, "medium")
            if condition.state == "warn" and condition.kind != "blocking_check"
            else SEVERITY[condition.kind]
        ),
        state=condition.state,
        dataset=condition.dataset,
        what=condition.what,
        how_many=condition.how_many,
        since=condition.since,
        likely_causes=list(condition.causes),
        owner=condition.owner,
        suggested_action=condition.action,
        details=condition.details,
        sent_at=utc_iso(now),
    )


# --- helpers --------------------------------------------------------------------------------


def _field(result: Any, name: str) -> Any:
    return result[name] if isinstance(result, dict) else getattr(result, name)


def _how_many(result: Any) -> str:
    if _field(result, "error"):
        return f"the check could not run: {_field(result, 'error')}"
    unexpected, elements = _field(result, "unexpected_count"), _field(result, "element_count")
    if _field(result, "expectation").startswith(("expect_table_", "expect_column_min", "expect_column_max")):
        return f"observed {_field(result, 'observed_value')}"
    return f"{unexpected:,} of {elements:,} rows"


def _load_time(load_id: str | None) -> str | None:
    try:
        return utc_iso(datetime.fromtimestamp(float(load_id), UTC))
    except (TypeError, ValueError):
        return None


def utc_iso(instant: datetime) -> str:
    """ISO 8601 in UTC with a Z; naive datetimes are UTC already (as DuckDB keeps them)."""
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC).replace(tzinfo=None)
    return instant.isoformat(timespec="seconds") + "Z"


def _human(instant: str) -> str:
    try:
        return datetime.fromisoformat(instant.rstrip("Z")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return instant
