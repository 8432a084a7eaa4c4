"""Support tickets, satisfaction ratings and product usage over each subscription's life.

Churn is preceded by signals, as in real accounts: in the last stretch before a paying
customer cancels (up to 60 days, at most half the subscription's life) tickets come three
times as often, a rating is far more likely to be bad, and product usage fades towards the
cancellation date. Outside that window both follow the account's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sample_company.arrays import DAY, NAT, days_between, frame, seconds, tokens, uniform_between
from sample_company.billing import TIERS, Billing

CHURN_WINDOW_DAYS = 60
CHURN_TICKET_LIFT = 3.0
BAD_RATING = 0.15
BAD_RATING_BEFORE_CHURN = 0.5
RATED_SHARE = 0.35
# Share of the events drawn at the cancellation date that are moved earlier; it rises
# linearly from 0 at the window's start, so usage fades rather than stops.
USAGE_FADE = 0.85

# `<domain>.<action>.<object>`, with relative frequencies.
EVENT_CATALOG = {
    "app.viewed.dashboard": 30,
    "app.signed_in.session": 14,
    "report.created.report": 8,
    "report.exported.csv": 5,
    "project.created.project": 4,
    "project.updated.task": 16,
    "collaboration.invited.user": 2,
    "collaboration.commented.task": 9,
    "integration.connected.slack": 1,
    "automation.enabled.workflow": 2,
    "automation.ran.workflow": 7,
    "billing.viewed.invoice": 1,
    "feature.enabled.sso": 1,
}
TICKET_SUBJECTS = np.array(
    [
        "Cannot export report",
        "SSO login failing",
        "Invoice question",
        "How do I invite teammates?",
        "Workflow did not run",
        "Slack integration disconnected",
        "Request to change plan",
        "Dashboard loads slowly",
        "Data missing from export",
        "Refund request",
    ]
)


@dataclass
class Activity:
    tickets: pl.DataFrame
    satisfaction_ratings: pl.DataFrame
    events: pl.DataFrame


def churn_windows(billing: Billing) -> tuple[np.ndarray, np.ndarray]:
    """Per subscription: start of its pre-churn window (NaT if it did not churn) and its length in days."""
    s = billing.spans
    length = np.where(s.churned, np.minimum(CHURN_WINDOW_DAYS, days_between(s.start, s.stop) / 2), 0.0)
    return np.where(s.churned, s.stop - seconds(length), NAT), length


def _contact_of(rng, company: np.ndarray, first_contact: np.ndarray, per_company: np.ndarray) -> np.ndarray:
    return first_contact[company] + (rng.random(len(company)) * per_company[company]).astype(np.int64)


def _handling(rng, created, solved_at, solved, end) -> pl.DataFrame:
    """How agents worked each ticket: first reply, replies, reopens, resolution times.

    Drawn from a stream of its own (spawned, so the main stream's draws stay as they were):
    adding these facts changed no other record. A solved ticket was first solved earlier when
    it was reopened; an unsolved one may still wait for its first reply.
    """
    t = len(created)
    open_minutes = np.maximum(days_between(created, np.where(solved, solved_at, end)), 0) * 1440
    # First replies: most within hours, a long tail; never after the ticket was solved.
    reply = np.minimum(rng.lognormal(mean=np.log(150), sigma=1.1, size=t), open_minutes)
    replied = solved | (rng.random(t) < 0.7)
    reopens = np.where(solved, rng.choice(3, size=t, p=[0.9, 0.08, 0.02]), 0)
    first_resolution = np.where(reopens > 0, open_minutes * rng.uniform(0.3, 0.8, size=t), open_minutes)
    # Business minutes: roughly the share of a week's minutes that are office hours.
    business = rng.uniform(0.25, 0.45, size=t)
    minutes = lambda values, ok: np.where(ok, np.round(values), np.nan)  # noqa: E731
    return pl.DataFrame(
        {
            "first_reply_minutes": minutes(reply, replied),
            "first_reply_business_minutes": minutes(reply * business, replied),
            "first_resolution_minutes": minutes(first_resolution, solved),
            "first_resolution_business_minutes": minutes(first_resolution * business, solved),
            "full_resolution_minutes": minutes(open_minutes, solved),
            "full_resolution_business_minutes": minutes(open_minutes * business, solved),
            "replies": np.where(replied, 1 + rng.poisson(1.5, size=t) + reopens, 0),
            "reopens": reopens,
        }
    ).with_columns(pl.col("^.*minutes$").fill_nan(None).cast(pl.Int64))


def simulate_activity(
    rng,
    end,
    billing: Billing,
    tickets_target: int,
    usage_events: int,
    contacts: pl.DataFrame,
    per_company: np.ndarray,
    zendesk_org: np.ndarray,
    workspace: pl.Series,
) -> Activity:
    s = billing.spans
    first_contact = np.cumsum(per_company) - per_company
    window_start, window_days = churn_windows(billing)
    span_days = np.maximum(days_between(s.start, s.stop), 1 / 24)

    # --- Tickets: a base rate by account size, lifted in the pre-churn window ------------
    size = 1 + np.minimum(s.seats, 40) / 20
    exposure = size * (span_days + window_days * (CHURN_TICKET_LIFT - 1))
    rate = tickets_target / exposure.sum()
    base = rng.poisson(rate * size * span_days)
    extra = rng.poisson(rate * size * window_days * (CHURN_TICKET_LIFT - 1))
    base_span, extra_span = np.repeat(np.arange(len(base)), base), np.repeat(np.arange(len(extra)), extra)
    t_span = np.r_[base_span, extra_span]
    t_created = np.r_[
        uniform_between(rng, s.start[base_span], s.stop[base_span]),
        uniform_between(rng, window_start[extra_span], s.stop[extra_span]),
    ]
    order = np.argsort(t_created, kind="stable")
    t_span, t_created = t_span[order], t_created[order]
    t = len(t_span)
    t_company = s.company[t_span]
    before_churn = t_created >= window_start[t_span]  # False where NaT
    t_solved = t_created + seconds(rng.gamma(shape=1.5, scale=30, size=t) / 24)
    solved = t_solved < end
    status = np.where(
        solved,
        np.where(t_solved < end - 4 * DAY, "closed", "solved"),
        rng.choice(np.array(["new", "open", "pending"]), size=t),
    )
    requester = contacts["zendesk_user_id"].to_numpy()[_contact_of(rng, t_company, first_contact, per_company)]
    handling = _handling(rng.spawn(1)[0], t_created, t_solved, solved, end)
    tickets = frame(
        {
            "ticket_id": 1 + np.arange(t),
            "zendesk_organization_id": zendesk_org[t_company],
            "requester_id": requester,
            "subject": TICKET_SUBJECTS[rng.integers(0, len(TICKET_SUBJECTS), size=t)],
            "status": status,
            "priority": rng.choice(np.array(["low", "normal", "high", "urgent"]), size=t, p=[0.3, 0.5, 0.15, 0.05]),
            "created_at": t_created,
            "updated_at": np.where(solved, t_solved, t_created),
            "solved_at": np.where(solved, t_solved, NAT),
            "before_churn": before_churn,
        }
    ).hstack(handling)

    rated = solved & (rng.random(t) < RATED_SHARE)
    bad = rng.random(t) < np.where(before_churn, BAD_RATING_BEFORE_CHURN, BAD_RATING)
    # Ratings arrive two hours after solving; one that would arrive after the end has not yet.
    rated &= t_solved + 2 * 3600 * np.timedelta64(1, "s") < end
    satisfaction_ratings = frame(
        {
            "rating_id": 90_000_001 + np.arange(int(rated.sum())),
            "ticket_id": (1 + np.arange(t))[rated],
            "requester_id": requester[rated],
            "zendesk_organization_id": zendesk_org[t_company][rated],
            "score": np.where(bad[rated], "bad", "good"),
            "created_at": t_solved[rated] + 2 * 3600 * np.timedelta64(1, "s"),
        }
    )

    # --- Usage events: by account size and time, fading before a churn ------------------
    weight = span_days * np.sqrt(s.seats)
    e_span = rng.choice(len(weight), size=usage_events, p=weight / weight.sum())
    e_ts = uniform_between(rng, s.start[e_span], s.stop[e_span])
    # Move a rising share of the events in the pre-churn window to earlier in the subscription.
    into_window = days_between(window_start[e_span], e_ts) / np.where(window_days[e_span] > 0, window_days[e_span], 1)
    moved = (rng.random(usage_events) < USAGE_FADE * np.nan_to_num(into_window, nan=0.0)) & (into_window >= 0)
    earlier = uniform_between(
        rng, s.start[e_span], np.where(np.isnat(window_start[e_span]), s.stop[e_span], window_start[e_span])
    )
    e_ts = np.where(moved, earlier, e_ts)
    order = np.argsort(e_ts, kind="stable")
    e_span, e_ts = e_span[order], e_ts[order]
    e_company = s.company[e_span]
    user = contacts["product_user_id"].gather(_contact_of(rng, e_company, first_contact, per_company))
    tier, _ = billing.changes.plan_at(s, e_span, e_ts)
    names = np.array(list(EVENT_CATALOG))
    freq = np.array(list(EVENT_CATALOG.values()), dtype=float)
    events = frame(
        {
            "event_id": tokens(rng, usage_events, "evt_", 20),
            "event": pl.Series(names).gather(rng.choice(len(names), size=usage_events, p=freq / freq.sum())),
            "user_id": user,
            "account_id": workspace.gather(e_company),
            "timestamp": e_ts,
            # Collectors receive an event within seconds of the client sending it.
            "received_at": e_ts + seconds(rng.exponential(scale=20, size=usage_events) / 86400),
            "plan": pl.Series(TIERS).gather(tier),
        }
    )
    return Activity(tickets, satisfaction_ratings, events)
