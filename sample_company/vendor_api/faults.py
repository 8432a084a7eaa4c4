"""Misbehaviour the local vendor APIs can be told to show, the way real ones do now and then.

Tests (and `spine serve --fault ...`) inject faults to prove the connectors retry what is
worth retrying, wait as long as the vendor asks, and fail clearly on what is not transient.
Counted faults apply to the next N matching requests, then the API behaves again; rates answer
a share of all matching requests with an error for as long as they are set, drawn from a
seeded generator so a test sees the same sequence of answers every time.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, fields


@dataclass
class Faults:
    latency: float = 0.0
    """Seconds added before every response."""
    rate_limited: int = 0
    """Next N requests answer 429 with a `Retry-After` header."""
    retry_after: int = 1
    """Seconds the 429 answers ask the client to wait."""
    server_errors: int = 0
    """Next N requests answer 503 (a burst of 5xx)."""
    truncated: int = 0
    """Next N responses announce their full length but the connection drops halfway through."""
    redelivered: int = 0
    """Next N follow-up pages are answered with the page before them again (a redelivery)."""
    server_error_rate: float = 0.0
    """Share of requests answered 503, at random (see `seed`)."""
    rate_limit_rate: float = 0.0
    """Share of requests answered 429 with a `Retry-After` header, at random (see `seed`)."""
    seed: int = 0
    """Seed of the draws that pick the requests the rates fail."""
    requests_per_second: float = 0.0
    """A real rate limit: over this many requests in a second answers 429 (0 = no limit)."""
    vendor: str | None = None
    """Only requests to this vendor (`stripe`, `hubspot`, `zendesk`) are affected."""


@dataclass
class Verdict:
    """What the server does with one request."""

    status: int | None = None  # an error status to answer instead of the real response
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False
    redeliver: bool = False  # answer with the previous page of this endpoint instead


class FaultInjector:
    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self._recent: list[float] = []
        self._draws = random.Random(0)

    def set(self, **changes) -> Faults:
        known = {f.name for f in fields(Faults)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(known)}")
        faults = Faults(**changes)
        rates = (faults.server_error_rate, faults.rate_limit_rate)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError(f"fault rates must be shares between 0 and 1 that add up to at most 1, not {rates}")
        with self._lock:
            self.faults = faults
            self._draws = random.Random(faults.seed)
            self._recent.clear()
        return self.faults

    def clear(self) -> None:
        self.set()

    def redelivered_one(self) -> None:
        """A redelivery was served (only follow-up pages count: a first page has no previous)."""
        with self._lock:
            self.faults.redelivered = max(0, self.faults.redelivered - 1)

    def judge(self, vendor: str) -> Verdict:
        with self._lock:
            f = self.faults
            if f.vendor and f.vendor != vendor:
                return Verdict()
            delay = f.latency
            verdict = Verdict()
            if f.rate_limited > 0:
                f.rate_limited -= 1
                verdict = Verdict(429, {"Retry-After": str(f.retry_after)})
            elif f.server_errors > 0:
                f.server_errors -= 1
                verdict = Verdict(503)
            elif f.server_error_rate or f.rate_limit_rate:
                draw = self._draws.random()
                if draw < f.server_error_rate:
                    verdict = Verdict(503)
                elif draw < f.server_error_rate + f.rate_limit_rate:
                    verdict = Verdict(429, {"Retry-After": str(f.retry_after)})
            if verdict.status is None and f.requests_per_second:
                now = time.monotonic()
                self._recent = [t for t in self._recent if now - t < 1.0]
                if len(self._recent) >= f.requests_per_second:
                    wait = max(1, round(1.0 - (now - self._recent[0]) + 0.5))
                    verdict = Verdict(429, {"Retry-After": str(wait)})
                else:
                    self._recent.append(now)
            if verdict.status is None and f.truncated > 0:
                f.truncated -= 1
                verdict = Verdict(truncate=True)
            elif verdict.status is None and f.redelivered > 0:
                verdict = Verdict(redeliver=True)
        if delay:
            time.sleep(delay)
        return verdict


def parse_fault_options(options: tuple[str, ...]) -> dict:
    """`("latency=0.2", "server_errors=3")` → `{"latency": 0.2, "server_errors": 3}`."""
    types = {f.name: f.type for f in fields(Faults)}
    out: dict = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in types:
            raise ValueError(f"fault {option!r}: use name=value with name one of {sorted(types)}")
        kind = str(types[name])
        out[name] = float(value) if "float" in kind else int(value) if "int" in kind else value
    return out
