"""Data-subject requests: received, worked on, done, and on time.

The register (`<privacy>/requests.json`) holds no personal data: a request's id, kind, the keyed
hash of its subject, when it came, its owner, where it stands and what was done where. The
person's identifiers, which the request job needs to find them, wait in a file of their own
(`<privacy>/pending/<id>.json`, readable by the owner only) and are deleted when the request is
done, so run configuration, logs and event storage only ever see the request id.

Deadline (the governance reference's right-to-erasure process): a request still open 48 hours
after it came alerts its owner, 60 hours escalates (`sla_conditions`, announced once each by
the alerting path like any other condition).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quality.alert_conditions import OK, Condition, utc_iso

KINDS = ("access", "erasure")
OPEN, DONE, FAILED = "open", "done", "failed"
ALERT_AFTER = timedelta(hours=48)
ESCALATE_AFTER = timedelta(hours=60)
# Who answers for requests, and who hears when one is late; overridable per request.
PRIVACY_OWNER = "Data Protection Officer"
ESCALATION = "Legal"


@dataclass(frozen=True)
class SubjectRequest:
    id: str
    kind: str  # access | erasure
    subject_hash: str
    received_at: str  # ISO 8601, UTC
    owner: str = PRIVACY_OWNER
    status: str = OPEN  # open | done | failed (failed stays open for the deadline: it is retried)
    attempts: int = 0
    completed_at: str | None = None
    run_id: str | None = None
    last_error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def age(self, now: datetime) -> timedelta:
        return now - datetime.fromisoformat(self.received_at)

    @property
    def is_open(self) -> bool:
        return self.status != DONE


class RequestRegister:
    """The register file and the pending identifiers beside it."""

    def __init__(self, privacy_dir: Path):
        self.dir = Path(privacy_dir)
        self.path = self.dir / "requests.json"
        self.pending_dir = self.dir / "pending"
        self.exports_dir = self.dir / "exports"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "requests.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            yield state
            partial = self.path.with_suffix(".tmp")
            partial.write_text(json.dumps(state, indent=1, sort_keys=True))
            os.replace(partial, self.path)

    def _read(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def all(self) -> list[SubjectRequest]:
        return sorted((SubjectRequest(**data) for data in self._read().values()), key=lambda r: r.received_at)

    def get(self, request_id: str) -> SubjectRequest:
        data = self._read().get(request_id)
        if data is None:
            raise KeyError(f"no data-subject request {request_id!r} (see `spine privacy requests`)")
        return SubjectRequest(**data)

    def receive(
        self,
        kind: str,
        subject_hash: str,
        identifiers: dict[str, Any],
        received_at: datetime | None = None,
        owner: str = PRIVACY_OWNER,
    ) -> SubjectRequest:
        """Register a request; its identifiers wait in the pending file until it is done."""
        if kind not in KINDS:
            raise ValueError(f"unknown request kind {kind!r}; choose one of: {', '.join(KINDS)}")
        request = SubjectRequest(
            id=f"dsr-{uuid.uuid4().hex[:12]}",
            kind=kind,
            subject_hash=subject_hash,
            received_at=utc_iso(received_at or datetime.now(UTC)),
            owner=owner,
        )
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        pending = self.pending_dir / f"{request.id}.json"
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identifiers, f)
        with self._locked() as state:
            state[request.id] = asdict(request)
        return request

    def identifiers(self, request_id: str) -> dict[str, Any]:
        path = self.pending_dir / f"{request_id}.json"
        if not path.exists():
            raise FileNotFoundError(
                f"request {request_id}: its identifiers are gone (the request is done, or its pending file was removed)"
            )
        return json.loads(path.read_text())

    def update(self, request_id: str, **changes: Any) -> SubjectRequest:
        with self._locked() as state:
            request = replace(SubjectRequest(**state[request_id]), **changes)
            state[request_id] = asdict(request)
        return request

    def complete(self, request_id: str, run_id: str, steps: list[dict[str, Any]], now: datetime | None = None):
        """Done: the steps recorded, the identifiers forgotten."""
        request = self.update(
            request_id,
            status=DONE,
            completed_at=utc_iso(now or datetime.now(UTC)),
            run_id=run_id,
            steps=steps,
            last_error=None,
        )
        (self.pending_dir / f"{request_id}.json").unlink(missing_ok=True)
        return request

    def fail(self, request_id: str, run_id: str, error: str, steps: list[dict[str, Any]]) -> SubjectRequest:
        current = self.get(request_id)
        return self.update(
            request_id, status=FAILED, run_id=run_id, last_error=error, steps=steps, attempts=current.attempts + 1
        )

    def of_subject(self, subject_hash: str) -> list[SubjectRequest]:
        return [r for r in self.all() if r.subject_hash == subject_hash]


def sla_conditions(register: RequestRegister, now: datetime | None = None) -> list[Condition]:
    """One condition per request: ok while on time or done, warn at 48 hours, fail at 60."""
    now = now or datetime.now(UTC)
    conditions = []
    for request in register.all():
        age = request.age(now)
        late = request.is_open and age >= ALERT_AFTER
        state = OK if not late else "fail" if age >= ESCALATE_AFTER else "warn"
        hours = int(age.total_seconds() // 3600)
        conditions.append(
            Condition(
                key=f"dsr_sla:{request.id}",
                kind="dsr_sla",
                state=state,
                dataset=f"data-subject request {request.id} ({request.kind})",
                what=(
                    f"{request.kind} request open for {hours} hours (alert at 48, escalation at 60)"
                    if late
                    else f"{request.kind} request {request.status}"
                ),
                how_many=f"{request.attempts} attempt(s) so far"
                + (f"; last error: {request.last_error}" if request.last_error else ""),
                since=request.received_at,
                causes=("the request job has not run since it came", "a step keeps failing (see the last error)")
                if late
                else (),
                owner=ESCALATION if state == "fail" else request.owner,
                action=f"run `spine privacy run {request.id}` and read its report; complete it before 72 hours",
                details={"request_id": request.id, "kind": request.kind, "status": request.status},
            )
        )
    return conditions
