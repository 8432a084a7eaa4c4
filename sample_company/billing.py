"""Billing history: subscriptions and what they were invoiced, charged and refunded.

A company starts with a 14-day trial; most convert. A paying subscription changes plan now
and then (more seats, fewer seats, a tier up or down), may carry a coupon, and is cancelled
after an exponential lifetime. A quarter of the customers who cancel come back after a gap
of months with a new subscription for the same Stripe customer. Plan changes use Stripe's
`proration_behavior=none`: the new price is billed from the next period, so every invoice
shows the plan in force when its period started. Some payments fail: most are recovered by
a retry a few days later, the rest stay `open` while dunning runs and then become
`uncollectible`.

Everything is computed for all rows at once with NumPy; every random draw has a fixed size
and order, so a seed always gives the same history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sample_company.arrays import (
    DAY,
    NAT,
    add_months,
    days_between,
    frame,
    group_cumsum,
    last_at_or_before,
    position_in_group,
    seconds,
    tokens,
)

TIERS = np.array(["starter", "growth", "enterprise"])
TIER_WEIGHTS = np.array([0.5, 0.35, 0.15])
CURRENCIES = np.array(["usd", "eur", "gbp"])
CURRENCY_WEIGHTS = np.array([0.7, 0.2, 0.1])
# Monthly list price per seat in minor units, by currency and tier.
SEAT_PRICE = np.array([[1500, 4000, 9000], [1400, 3700, 8300], [1200, 3200, 7200]])
# The CRM records ARR in USD at the finance team's budget rates (also dbt's rates seed).
USD_RATE = np.array([1.0, 1.08, 1.27])
ANNUAL_DISCOUNT = 0.85  # annual plans cost 12 months at 15% off
TRIAL_DAYS = 14

MEAN_LIFETIME_DAYS = 900
WINBACK_RATE = 0.25
WINBACK_MIN_GAP_DAYS = 45  # longer than a month, so old and new subscription never share a revenue month
WINBACK_MEAN_EXTRA_GAP_DAYS = 150
WINBACK_NEW_TIER_SHARE = 0.3
PLAN_CHANGE_EVERY_MONTHS = 9
MAX_PLAN_CHANGES = 4
TIER_CHANGE_SHARE = 0.3  # the rest of plan changes are seat changes
UPGRADE_SHARE = 0.65
COUPON_RATE = 0.2
FAILED_PAYMENT_RATE = 0.06
RECOVERED_SHARE = 0.7  # of failed payments, paid by a retry
RETRY_DAYS = (3, 8)
DUNNING_DAYS = 21  # an unpaid invoice stays open this long before it is written off
REFUND_RATE = 0.01
FAILURES = {
    "card_declined": ("Your card was declined.", 0.45),
    "insufficient_funds": ("Your card has insufficient funds.", 0.3),
    "expired_card": ("Your card has expired.", 0.12),
    "processing_error": ("An error occurred while processing your card. Try again in a little bit.", 0.08),
    "incorrect_cvc": ("Your card's security code is incorrect.", 0.05),
}


@dataclass(frozen=True)
class Coupon:
    id: str
    duration: str  # once | repeating | forever, as in Stripe
    percent_off: float | None = None
    amount_off: int | None = None  # minor units of the subscription's currency
    duration_in_months: int | None = None
    weight: float = 1.0


COUPONS = (
    Coupon("WELCOME20", "repeating", percent_off=20.0, duration_in_months=3, weight=4),
    Coupon("LAUNCH50", "once", percent_off=50.0, weight=2),
    Coupon("PARTNER15", "forever", percent_off=15.0, weight=2),
    Coupon("NONPROFIT30", "forever", percent_off=30.0, weight=1),
    Coupon("CREDIT100", "once", amount_off=10_000, weight=2),
)


def unit_amount(tier: np.ndarray, currency: np.ndarray, annual: np.ndarray) -> np.ndarray:
    """Price per seat per billing interval, in minor units."""
    monthly = SEAT_PRICE[currency, tier]
    return np.where(annual, np.round(monthly * ANNUAL_DISCOUNT).astype(np.int64) * 12, monthly)


def price_ids(tier: np.ndarray, currency: np.ndarray, annual: np.ndarray) -> pl.Series:
    return (
        pl.DataFrame({"t": TIERS[tier], "c": CURRENCIES[currency], "a": annual})
        .select(
            "price_"
            + pl.col("t")
            + "_"
            + pl.col("c")
            + "_"
            + pl.when(pl.col("a")).then(pl.lit("yearly")).otherwise(pl.lit("monthly"))
        )
        .to_series()
    )


def price_catalog() -> pl.DataFrame:
    tier, currency, annual = (a.ravel() for a in np.meshgrid(np.arange(3), np.arange(3), [False, True], indexing="ij"))
    return pl.DataFrame(
        {
            "price_id": price_ids(tier, currency, annual),
            "product_id": "prod_" + pl.Series(TIERS[tier]),
            "product_name": "Data Spine " + pl.Series(TIERS[tier]).str.to_titlecase(),
            "unit_amount": unit_amount(tier, currency, annual),
            "currency": CURRENCIES[currency],
            "interval": np.where(annual, "year", "month"),
        }
    )


@dataclass
class Spans:
    """One row per subscription: who, when, and the plan it started on."""

    company: np.ndarray
    start: np.ndarray
    trial_start: np.ndarray
    trial_end: np.ndarray
    paid_start: np.ndarray  # NaT when never paid
    ended: np.ndarray  # NaT while running
    stop: np.ndarray  # ended, or the end of history
    tier: np.ndarray
    seats: np.ndarray
    winback: np.ndarray

    @property
    def paid(self) -> np.ndarray:
        return ~np.isnat(self.paid_start)

    @property
    def churned(self) -> np.ndarray:
        """Cancelled after paying (a lapsed trial is not a churn)."""
        return self.paid & ~np.isnat(self.ended)


@dataclass
class PlanChanges:
    """Upgrades and downgrades, sorted by (span, time): the plan after each change."""

    span: np.ndarray
    time: np.ndarray
    tier: np.ndarray
    seats: np.ndarray

    def plan_at(self, spans: Spans, span: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = last_at_or_before(self.span, self.time, span, time)
        return (
            np.where(idx >= 0, self.tier[idx], spans.tier[span]),
            np.where(idx >= 0, self.seats[idx], spans.seats[span]),
        )


@dataclass
class Billing:
    spans: Spans
    changes: PlanChanges
    subscriptions: pl.DataFrame
    invoices: pl.DataFrame
    charges: pl.DataFrame
    refunds: pl.DataFrame
    current_span: np.ndarray  # per company: its latest subscription


# Stripe expires a subscription whose first payment never succeeded after 23 hours.
INCOMPLETE_EXPIRES = np.timedelta64(23 * 3600, "s")


def _spans(rng, end, created, tier, seats, converts, trials: bool = True) -> Spans:
    """Without trials a company subscribes and pays at once; one that does not convert is a
    subscription whose first payment failed (`incomplete_expired` a day later)."""
    n = len(created)
    trial_end = created + (TRIAL_DAYS * DAY if trials else INCOMPLETE_EXPIRES)
    churn = trial_end + seconds(rng.exponential(MEAN_LIFETIME_DAYS, n))
    first_end = np.where(converts, np.where(churn < end, churn, NAT), np.where(trial_end < end, trial_end, NAT))
    back_at = churn + seconds(WINBACK_MIN_GAP_DAYS + rng.exponential(WINBACK_MEAN_EXTRA_GAP_DAYS, n))
    second_churn = back_at + seconds(rng.exponential(MEAN_LIFETIME_DAYS, n))
    new_tier = np.where(rng.random(n) < WINBACK_NEW_TIER_SHARE, rng.choice(3, size=n, p=TIER_WEIGHTS), tier)
    returns = converts & (churn < end) & (rng.random(n) < WINBACK_RATE) & (back_at < end - DAY)

    back = np.flatnonzero(returns)
    none = np.full(len(back), NAT)
    ended = np.r_[first_end, np.where(second_churn[back] < end, second_churn[back], NAT)]
    return Spans(
        company=np.r_[np.arange(n), back],
        start=np.r_[created, back_at[back]],
        trial_start=np.r_[created if trials else np.full(n, NAT), none],
        trial_end=np.r_[trial_end if trials else np.full(n, NAT), none],
        paid_start=np.r_[np.where(converts, trial_end if trials else created, NAT), back_at[back]],
        ended=ended,
        stop=np.where(np.isnat(ended), end, ended),
        tier=np.r_[tier, new_tier[back]],
        seats=np.r_[seats, seats[back]],
        winback=np.r_[np.zeros(n, bool), np.ones(len(back), bool)],
    )


def _plan_changes(rng, spans: Spans, end) -> PlanChanges:
    paid_days = np.where(spans.paid & (spans.paid_start < end), days_between(spans.paid_start, spans.stop), 0.0)
    count = np.minimum(rng.poisson(np.maximum(paid_days, 0) / 30.44 / PLAN_CHANGE_EVERY_MONTHS), MAX_PLAN_CHANGES)
    span = np.repeat(np.arange(len(count)), count)
    c = len(span)
    # Nobody changes plan in the first month of paying.
    time = spans.paid_start[span] + seconds(30 + rng.random(c) * np.maximum(paid_days[span] - 30, 0))
    is_tier = rng.random(c) < TIER_CHANGE_SHARE
    up = rng.random(c) < UPGRADE_SHARE
    size = rng.uniform(0.1, 0.6, size=c)
    log_seats = np.where(is_tier, 0.0, np.where(up, np.log1p(size), -np.log1p(size * 0.6)))
    tier_step = np.where(is_tier, np.where(up, 1, -1), 0)

    keep = time < spans.stop[span]
    order = np.lexsort((time[keep], span[keep]))
    span, time, log_seats, tier_step = (a[keep][order] for a in (span, time, log_seats, tier_step))
    if not len(span):
        return PlanChanges(span, time, span.copy(), span.copy())
    seats = np.maximum(1, np.round(spans.seats[span] * np.exp(group_cumsum(log_seats, span)))).astype(np.int64)
    tier = np.clip(spans.tier[span] + group_cumsum(tier_step, span), 0, 2)
    return PlanChanges(span, time, tier, seats)


def _discount_where(discounts: pl.DataFrame, applies: np.ndarray) -> pl.DataFrame:
    """The discount columns on the rows where it applies, null elsewhere; a coupon has either
    percent_off or amount_off, and duration_in_months only when `repeating`."""
    flag = pl.lit(pl.Series(applies))
    return discounts.select(
        pl.when(
            flag & (pl.col(c) > 0)
            if c in ("coupon_percent_off", "coupon_amount_off", "coupon_duration_in_months")
            else flag
        )
        .then(pl.col(c))
        .alias(c)
        for c in discounts.columns
    )


def simulate_billing(
    rng,
    end,
    created,
    tier,
    seats,
    converts,
    currency,
    annual,
    customer_ids: pl.Series,
    trials: bool = True,
    coupons: bool = True,
) -> Billing:
    """`trials` and `coupons` switch those features off (the same draws are made either way,
    so everything else about the company stays as it was)."""
    spans = _spans(rng, end, created, tier, seats, converts, trials)
    changes = _plan_changes(rng, spans, end)
    s = len(spans.company)
    cur = currency[spans.company]
    yearly = annual[spans.company]
    months_per_period = np.where(yearly, 12, 1)

    # --- Coupons: applied when the subscription starts -------------------------------------
    has_coupon = (rng.random(s) < COUPON_RATE) & coupons
    coupon = rng.choice(len(COUPONS), size=s, p=(w := np.array([c.weight for c in COUPONS])) / w.sum())
    coupon_names = np.array([c.id for c in COUPONS])[coupon]
    duration = np.array([c.duration for c in COUPONS])[coupon]
    percent_off = np.array([c.percent_off or 0.0 for c in COUPONS])[coupon]
    amount_off = np.array([c.amount_off or 0 for c in COUPONS])[coupon]
    repeat_months = np.array([c.duration_in_months or 0 for c in COUPONS])[coupon]
    discount_end = np.where(duration == "repeating", add_months(spans.start, repeat_months), NAT)

    # --- Invoices: one per billing period started before the subscription stopped ----------
    paid_days = np.where(spans.paid, days_between(spans.paid_start, spans.stop), 0.0)
    upper = np.where(spans.paid, np.ceil(np.maximum(paid_days, 0) / 28 / months_per_period) + 1, 0).astype(np.int64)
    inv_span = np.repeat(np.arange(s), upper)
    period_no = position_in_group(upper)
    period_start = add_months(spans.paid_start[inv_span], period_no * months_per_period[inv_span])
    keep = period_start < spans.stop[inv_span]
    inv_span, period_no, period_start = inv_span[keep], period_no[keep], period_start[keep]
    period_end = add_months(spans.paid_start[inv_span], (period_no + 1) * months_per_period[inv_span])
    k = len(inv_span)

    inv_tier, inv_seats = changes.plan_at(spans, inv_span, period_start)
    subtotal = unit_amount(inv_tier, cur[inv_span], yearly[inv_span]) * inv_seats
    d = inv_span
    discounted = has_coupon[d] & (
        (duration[d] == "forever")
        | ((duration[d] == "once") & (period_no == 0))
        | ((duration[d] == "repeating") & (period_start < discount_end[d]))
    )
    discount = np.where(
        discounted,
        np.where(percent_off[d] > 0, np.round(subtotal * percent_off[d] / 100), np.minimum(amount_off[d], subtotal)),
        0,
    ).astype(np.int64)
    total = subtotal - discount

    # --- Payments: a share fails; a retry recovers most, the rest go through dunning --------
    charged = total > 0
    failed = charged & (rng.random(k) < FAILED_PAYMENT_RATE)
    retry_at = period_start + seconds(rng.integers(*RETRY_DAYS, size=k) + 1 / 24)
    recovered = failed & (rng.random(k) < RECOVERED_SHARE) & (retry_at < end)
    dunning = failed & ~recovered & (period_start > end - DUNNING_DAYS * DAY)
    written_off = failed & ~recovered & ~dunning
    status = np.where(dunning, "open", np.where(written_off, "uncollectible", "paid"))
    amount_paid = np.where(status == "paid", total, 0)
    codes = np.array(list(FAILURES))
    p_code = np.array([w for _, w in FAILURES.values()])
    failure = rng.choice(len(codes), size=k, p=p_code / p_code.sum())

    subscription_ids = tokens(rng, s, "sub_")
    invoice_ids = tokens(rng, k, "in_")
    # The coupon of each subscription, shown where a discount applies (see `_discount_where`).
    discounts = frame(
        {
            "discount_id": tokens(rng, s, "di_"),
            # Stripe coupons with an amount off are in one currency, hence one coupon per currency.
            "coupon_id": np.where(
                amount_off > 0,
                np.char.add(coupon_names, np.char.add("_", np.char.upper(CURRENCIES[cur]))),
                coupon_names,
            ),
            "coupon_percent_off": percent_off,
            "coupon_amount_off": amount_off,
            "coupon_duration": duration,
            "coupon_duration_in_months": repeat_months,
            "discount_start": spans.start,
            "discount_end": discount_end,
        }
    )
    invoices = frame(
        {
            "invoice_id": invoice_ids,
            "stripe_customer_id": customer_ids.gather(spans.company[inv_span]),
            "subscription_id": subscription_ids.gather(inv_span),
            "span": inv_span,
            "currency": CURRENCIES[cur[inv_span]],
            "billing_reason": np.where(period_no == 0, "subscription_create", "subscription_cycle"),
            "price_id": price_ids(inv_tier, cur[inv_span], yearly[inv_span]),
            "quantity": inv_seats,
            "subtotal": subtotal,
            "total": total,
            "amount_due": total,
            "amount_paid": amount_paid,
            "amount_remaining": total - amount_paid,
            "attempt_count": np.where(charged, 1 + (recovered | written_off), 0),
            "attempted": charged,
            "status": status,
            "created": period_start,
            "period_start": period_start,
            "period_end": period_end,
        }
    ).hstack(_discount_where(discounts[inv_span], discounted))

    # --- Charges: the first attempt, and the retry of failed ones -------------------------
    first = np.flatnonzero(charged)
    retried = np.flatnonzero(recovered | written_off)
    on = np.r_[first, retried]
    ok = np.r_[~failed[first], recovered[retried]]
    messages = np.array([m for m, _ in FAILURES.values()])
    charges = (
        frame(
            {
                "charge_id": tokens(rng, len(on), "ch_"),
                "stripe_customer_id": invoices["stripe_customer_id"].gather(on),
                "invoice_id": invoice_ids.gather(on),
                "amount": total[on],
                "currency": CURRENCIES[cur[inv_span[on]]],
                "status": np.where(ok, "succeeded", "failed"),
                "failure_code": codes[failure[on]],
                "failure_message": messages[failure[on]],
                "created": np.r_[period_start[first] + 3600 * np.timedelta64(1, "s"), retry_at[retried]],
            }
        )
        .with_columns(
            pl.when(pl.col("status") == "failed").then(pl.col("failure_code")),
            pl.when(pl.col("status") == "failed").then(pl.col("failure_message")),
        )
        .sort("created", maintain_order=True)
    )

    # --- Refunds: a few paid charges are given back, most in full -------------------------
    succeeded = charges.filter(pl.col("status") == "succeeded")
    refunded = rng.random(succeeded.height) < REFUND_RATE
    partial = rng.random(succeeded.height) < 0.2
    r = succeeded.filter(pl.Series(refunded))
    refunds = r.select(
        tokens(rng, r.height, "re_").alias("refund_id"),
        "charge_id",
        pl.when(pl.Series(partial[refunded])).then(pl.col("amount") // 2).otherwise(pl.col("amount")).alias("amount"),
        "currency",
        pl.lit("succeeded").alias("status"),
        (pl.col("created") + pl.duration(days=5)).alias("created"),
    )
    charges = charges.join(
        refunds.group_by("charge_id").agg(pl.col("amount").sum().alias("amount_refunded")),
        on="charge_id",
        how="left",
        maintain_order="left",
    ).with_columns(pl.col("amount_refunded").fill_null(0))

    # --- Subscriptions as they stand at the end of history -------------------------------
    running = np.isnat(spans.ended)
    trialing = running & ~np.isnat(spans.trial_end) & (spans.trial_end > end)
    last_invoice = invoices.group_by("span").agg(pl.col("status").last())
    last_status = np.full(s, "", dtype=object)
    last_status[last_invoice["span"].to_numpy()] = last_invoice["status"].to_numpy()
    status = np.select(
        [
            trialing,
            ~running & ~spans.paid & np.isnat(spans.trial_end),
            ~running,
            last_status == "open",
            last_status == "uncollectible",
        ],
        ["trialing", "incomplete_expired", "canceled", "past_due", "unpaid"],
        "active",
    )
    at = np.where(spans.paid & (spans.paid_start < end), spans.stop, spans.start)
    tier_now, seats_now = changes.plan_at(spans, np.arange(s), at)
    # Stripe removes a discount once it has run out: a `once` coupon after the first invoice.
    first_invoiced = np.zeros(s, bool)
    first_invoiced[inv_span] = True
    in_effect = has_coupon & (
        (duration == "forever")
        | ((duration == "repeating") & (discount_end > at))
        | ((duration == "once") & ~first_invoiced)
    )
    subscriptions = frame(
        {
            "subscription_id": subscription_ids,
            "subscription_item_id": tokens(rng, s, "si_"),
            "stripe_customer_id": customer_ids.gather(spans.company),
            "company_index": spans.company,
            "price_id": price_ids(tier_now, cur, yearly),
            "tier": TIERS[tier_now],
            "quantity": seats_now,
            "unit_amount": unit_amount(tier_now, cur, yearly),
            "status": status,
            "created": spans.start,
            "start_date": spans.start,
            "trial_start": spans.trial_start,
            "trial_end": spans.trial_end,
            # An expired first payment is not a cancellation.
            "canceled_at": np.where(~spans.paid & np.isnat(spans.trial_end), NAT, spans.ended),
            "ended_at": spans.ended,
            "currency": CURRENCIES[cur],
            "annual": yearly,
            "winback": spans.winback,
        }
    ).hstack(_discount_where(discounts, in_effect))

    current_span = np.arange(len(created))
    current_span[spans.company[spans.winback]] = np.flatnonzero(spans.winback)
    return Billing(spans, changes, subscriptions, invoices.drop("span"), charges, refunds, current_span)
