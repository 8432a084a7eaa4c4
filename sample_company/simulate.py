"""Simulate the company's history as flat, vendor-neutral tables.

Everything is vectorised with NumPy so the `large` preset (50k companies, 10M events) stays
in minutes. One seeded generator drives every draw, in a fixed order, so a seed always
produces the same company. Vendor wire formats are applied later, in `vendors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import polars as pl
from faker import Faker

from sample_company.presets import Preset

DAY = np.timedelta64(1, "D")
SECOND = np.timedelta64(1, "s")

TIERS = np.array(["starter", "growth", "enterprise"])
TIER_WEIGHTS = np.array([0.5, 0.35, 0.15])
# Monthly list price per seat, in cents, by tier and currency.
SEAT_PRICE = {
    "usd": np.array([1500, 4000, 9000]),
    "eur": np.array([1400, 3700, 8300]),
    "gbp": np.array([1200, 3200, 7200]),
}
CURRENCIES = np.array(["usd", "eur", "gbp"])
CURRENCY_WEIGHTS = np.array([0.7, 0.2, 0.1])
# The CRM records ARR in USD at the finance team's budget rates (also dbt's rates seed).
USD_RATE = {"usd": 1.0, "eur": 1.08, "gbp": 1.27}
ANNUAL_DISCOUNT = 0.85  # annual plans cost 12 months at 15% off
INDUSTRIES = np.array(
    ["software", "healthcare", "finance", "retail", "manufacturing", "education", "media", "logistics"]
)
OWNERS = np.array([70001, 70002, 70003, 70004, 70005, 70006])
TRIAL_DAYS = 14

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
class Company:
    """The simulated company, as flat tables keyed by the source systems' own ids."""

    as_of: date
    companies: pl.DataFrame
    contacts: pl.DataFrame
    deals: pl.DataFrame
    prices: pl.DataFrame
    subscriptions: pl.DataFrame
    invoices: pl.DataFrame
    charges: pl.DataFrame
    refunds: pl.DataFrame
    tickets: pl.DataFrame
    satisfaction_ratings: pl.DataFrame
    events: pl.DataFrame


def _tokens(rng: np.random.Generator, n: int, length: int = 14) -> np.ndarray:
    """Random alphanumeric ids like Stripe's, drawn from the seeded generator."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    chars = alphabet[rng.integers(0, len(alphabet), size=(n, length))]
    return chars.view(f"<U{length}").ravel()


def _add_months(start: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Add whole months to datetime64[s] values, clipping the day to the month's end."""
    day = start.astype("datetime64[D]")
    month0 = day.astype("datetime64[M]")
    day_of_month = (day - month0.astype("datetime64[D]")).astype(int)
    target = month0 + months.astype("timedelta64[M]")
    month_len = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(int)
    new_day = target.astype("datetime64[D]") + np.minimum(day_of_month, month_len - 1) * DAY
    time_of_day = start - day.astype("datetime64[s]")
    return new_day.astype("datetime64[s]") + time_of_day


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())[:24] or "company"


def simulate(preset: Preset, seed: int, as_of: date) -> Company:
    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)

    end = np.datetime64(datetime.combine(as_of, time(0), tzinfo=None), "s")
    start = end - preset.history_days * DAY
    n = preset.companies

    # --- Companies (the CRM's accounts) -------------------------------------------------
    created = start + (rng.random(n) * (preset.history_days - 7) * 86400).astype("timedelta64[s]")
    created = np.sort(created)
    tier_idx = rng.choice(3, size=n, p=TIER_WEIGHTS)
    currency = rng.choice(CURRENCIES, size=n, p=CURRENCY_WEIGHTS)
    annual = rng.random(n) < 0.3
    seats = np.maximum(1, np.round(rng.lognormal(mean=1.6 + 0.6 * tier_idx, sigma=0.7, size=n))).astype(int)
    industry = rng.choice(INDUSTRIES, size=n)
    owner = rng.choice(OWNERS, size=n)
    converts = rng.random(n) < 0.72
    lifetime_days = rng.exponential(scale=900, size=n)

    names: list[str] = []
    domains: list[str] = []
    seen: set[str] = set()
    for i in range(n):
        name = fake.unique.company()
        base = _slug(name)
        domain = f"{base}.com"
        k = 2
        while domain in seen:
            domain = f"{base}{k}.com"
            k += 1
        seen.add(domain)
        names.append(name)
        domains.append(domain)

    trial_start = created
    trial_end = created + TRIAL_DAYS * DAY
    paid_start = np.where(converts, trial_end, np.datetime64("NaT"))
    churn_at = trial_end + (lifetime_days * 86400).astype("timedelta64[s]")
    ended_at = np.where(
        converts,
        np.where(churn_at < end, churn_at, np.datetime64("NaT")),
        np.where(trial_end < end, trial_end, np.datetime64("NaT")),
    )
    sub_status = np.where(
        trial_end > end,
        "trialing",
        np.where(np.isnat(ended_at), "active", "canceled"),
    )
    active_until = np.where(np.isnat(ended_at), end, ended_at)

    crm_id = (10_000_001 + np.arange(n)).astype(str)
    stripe_customer = np.char.add("cus_", _tokens(rng, n))
    workspace = np.char.add("ws_", (100_001 + np.arange(n)).astype(str))
    zendesk_org = 360_000_001 + np.arange(n)

    lifecycle = np.where(sub_status == "trialing", "opportunity", np.where(converts, "customer", "other"))
    crm_status = np.where(sub_status == "active", "active", np.where(sub_status == "trialing", "trial", "churned"))
    monthly_seat = np.select(
        [currency == c for c in CURRENCIES], [SEAT_PRICE[c][tier_idx] for c in CURRENCIES]
    )
    mrr_cents = np.where(annual, np.round(monthly_seat * ANNUAL_DISCOUNT), monthly_seat) * seats
    usd_rate = np.select([currency == c for c in CURRENCIES], [USD_RATE[c] for c in CURRENCIES])
    crm_arr = np.where(sub_status == "active", mrr_cents * 12 / 100 * usd_rate, 0.0)

    companies = _frame(
        {
            "crm_company_id": crm_id,
            "name": names,
            "domain": domains,
            "industry": industry,
            "owner_id": owner.astype(str),
            "lifecycle_stage": lifecycle,
            "crm_status": crm_status,
            "annual_revenue": np.round(crm_arr, 2),
            "created_at": created,
            "updated_at": np.maximum(created, active_until - (rng.random(n) * 30 * 86400).astype("timedelta64[s]")),
            "stripe_customer_id": stripe_customer,
            "workspace_id": workspace,
            "zendesk_organization_id": zendesk_org,
            "tier": TIERS[tier_idx],
            "currency": currency,
            "annual": annual,
            "seats": seats,
            "trial_start": trial_start,
            "trial_end": trial_end,
            "paid_start": paid_start,
            "ended_at": ended_at,
            "subscription_status": sub_status,
            "active_until": active_until,
        }
    )

    # --- Contacts (CRM contacts = product users = support requesters) -------------------
    per_company = 1 + rng.poisson(lam=np.minimum(seats, 12) / 3)
    company_of_contact = np.repeat(np.arange(n), per_company)
    m = len(company_of_contact)
    first = [fake.first_name() for _ in range(m)]
    last = [fake.last_name() for _ in range(m)]
    contact_domain = np.array(domains)[company_of_contact]
    emails = [f"{f.lower()}.{l.lower()}{i}@{d}" for i, (f, l, d) in enumerate(zip(first, last, contact_domain))]
    contact_created = created[company_of_contact] + (rng.random(m) * 20 * 86400).astype("timedelta64[s]")
    contacts = _frame(
        {
            "crm_contact_id": (20_000_001 + np.arange(m)).astype(str),
            "crm_company_id": crm_id[company_of_contact],
            "first_name": first,
            "last_name": last,
            "email": emails,
            "job_title": rng.choice(np.array(["Admin", "Manager", "Engineer", "Analyst", "Director"]), size=m),
            "created_at": contact_created,
            "updated_at": contact_created + (rng.random(m) * 60 * 86400).astype("timedelta64[s]"),
            "zendesk_user_id": 380_000_001 + np.arange(m),
            "product_user_id": np.char.add("usr_", (500_001 + np.arange(m)).astype(str)),
            "company_index": company_of_contact,
        }
    )

    # --- Deals: one won deal per converted company, lost deals for the rest --------------
    deals = _frame(
        {
            "crm_deal_id": (30_000_001 + np.arange(n)).astype(str),
            "crm_company_id": crm_id,
            "deal_name": [f"{nm} - {t}" for nm, t in zip(names, TIERS[tier_idx])],
            "amount": np.round(mrr_cents * 12 / 100, 2),
            "deal_stage": np.where(converts, "closedwon", np.where(trial_end > end, "contractsent", "closedlost")),
            "close_date": np.where(converts, trial_end, trial_end),
            "created_at": created,
            "updated_at": np.minimum(trial_end, end),
        }
    )

    # --- Billing: prices, subscriptions, invoices, charges, refunds ----------------------
    price_rows = []
    for t_i, tier in enumerate(TIERS):
        for cur in CURRENCIES:
            for interval in ("month", "year"):
                unit = SEAT_PRICE[cur][t_i]
                amount = unit if interval == "month" else int(round(unit * ANNUAL_DISCOUNT)) * 12
                price_rows.append(
                    {
                        "price_id": f"price_{tier}_{cur}_{interval}ly",
                        "product_id": f"prod_{tier}",
                        "product_name": f"Data Spine {tier.title()}",
                        "unit_amount": int(amount),
                        "currency": str(cur),
                        "interval": interval,
                    }
                )
    prices = pl.DataFrame(price_rows)

    interval_name = np.where(annual, "yearly", "monthly")
    price_id = np.char.add(
        np.char.add(np.char.add(np.char.add("price_", TIERS[tier_idx]), "_"), np.char.add(currency, "_")),
        interval_name,
    )
    subscriptions = _frame(
        {
            "subscription_id": np.char.add("sub_", _tokens(rng, n)),
            "subscription_item_id": np.char.add("si_", _tokens(rng, n)),
            "stripe_customer_id": stripe_customer,
            "price_id": price_id,
            "quantity": seats,
            "status": sub_status,
            "created": trial_start,
            "start_date": trial_start,
            "trial_start": trial_start,
            "trial_end": trial_end,
            "canceled_at": ended_at,
            "ended_at": ended_at,
            "currency": currency,
            "annual": annual,
        }
    )

    # One invoice per paid billing period that has started by `as_of`.
    paid = converts & (trial_end <= end)
    months_per_period = np.where(annual, 12, 1)
    paid_days = (active_until - trial_end) / DAY
    months_active = np.where(paid, np.ceil(np.maximum(paid_days, 0) / 30.44), 0).astype(int)
    periods = np.where(paid, np.maximum(1, -(-months_active // months_per_period)), 0)
    inv_company = np.repeat(np.arange(n), periods)
    period_no = np.arange(len(inv_company)) - np.repeat(np.cumsum(periods) - periods, periods)
    period_start = _add_months(trial_end[inv_company], period_no * months_per_period[inv_company])
    period_end = _add_months(trial_end[inv_company], (period_no + 1) * months_per_period[inv_company])
    keep = period_start < end
    inv_company, period_start, period_end = inv_company[keep], period_start[keep], period_end[keep]
    k = len(inv_company)
    unit_price = np.where(annual, np.round(monthly_seat * ANNUAL_DISCOUNT) * 12, monthly_seat)
    amount_due = (unit_price * seats)[inv_company].astype(np.int64)
    invoices = _frame(
        {
            "invoice_id": np.char.add("in_", _tokens(rng, k)),
            "stripe_customer_id": stripe_customer[inv_company],
            "subscription_id": subscriptions["subscription_id"].to_numpy()[inv_company],
            "currency": currency[inv_company],
            "amount_due": amount_due,
            "amount_paid": amount_due,
            "status": np.full(k, "paid"),
            "created": period_start,
            "period_start": period_start,
            "period_end": period_end,
        }
    )
    charges = _frame(
        {
            "charge_id": np.char.add("ch_", _tokens(rng, k)),
            "stripe_customer_id": stripe_customer[inv_company],
            "invoice_id": invoices["invoice_id"].to_numpy(),
            "amount": amount_due,
            "currency": currency[inv_company],
            "status": np.full(k, "succeeded"),
            "created": period_start + 3600 * SECOND,
        }
    )
    refunded = rng.random(k) < 0.01
    r = int(refunded.sum())
    refunds = _frame(
        {
            "refund_id": np.char.add("re_", _tokens(rng, r)),
            "charge_id": charges["charge_id"].to_numpy()[refunded],
            "amount": amount_due[refunded],
            "currency": currency[inv_company][refunded],
            "status": np.full(r, "succeeded"),
            "created": period_start[refunded] + 5 * DAY,
        }
    )

    # --- Support tickets and satisfaction ratings ---------------------------------------
    active_days = np.maximum((active_until - trial_start) / DAY, 1)
    ticket_rate = active_days / 45 * (1 + np.minimum(seats, 40) / 20)
    tickets_per_company = rng.poisson(ticket_rate)
    t_company = np.repeat(np.arange(n), tickets_per_company)
    t = len(t_company)
    t_created = trial_start[t_company] + (rng.random(t) * active_days[t_company] * 86400).astype("timedelta64[s]")
    hours_to_solve = rng.gamma(shape=1.5, scale=30, size=t)
    t_solved = t_created + (hours_to_solve * 3600).astype("timedelta64[s]")
    solved = t_solved < end
    t_status = np.where(solved, np.where(t_solved < end - 4 * DAY, "closed", "solved"), rng.choice(np.array(["new", "open", "pending"]), size=t))
    first_contact = np.repeat(np.cumsum(per_company) - per_company, tickets_per_company)
    requester_idx = first_contact + (rng.random(t) * np.repeat(per_company, tickets_per_company)).astype(int)
    order = np.argsort(t_created, kind="stable")
    t_company, t_created, t_solved, solved, t_status, requester_idx = (
        a[order] for a in (t_company, t_created, t_solved, solved, t_status, requester_idx)
    )
    tickets = _frame(
        {
            "ticket_id": 1 + np.arange(t),
            "zendesk_organization_id": zendesk_org[t_company],
            "requester_id": contacts["zendesk_user_id"].to_numpy()[requester_idx],
            "subject": rng.choice(TICKET_SUBJECTS, size=t),
            "status": t_status,
            "priority": rng.choice(np.array(["low", "normal", "high", "urgent"]), size=t, p=[0.3, 0.5, 0.15, 0.05]),
            "created_at": t_created,
            "updated_at": np.where(solved, t_solved, t_created),
            "solved_at": np.where(solved, t_solved, np.datetime64("NaT")),
        }
    )
    rated = solved & (rng.random(t) < 0.35)
    s = int(rated.sum())
    satisfaction_ratings = _frame(
        {
            "rating_id": 90_000_001 + np.arange(s),
            "ticket_id": tickets["ticket_id"].to_numpy()[rated],
            "requester_id": tickets["requester_id"].to_numpy()[rated],
            "zendesk_organization_id": tickets["zendesk_organization_id"].to_numpy()[rated],
            "score": np.where(rng.random(s) < 0.82, "good", "bad"),
            "created_at": t_solved[rated] + 2 * 3600 * SECOND,
        }
    )

    # --- Product usage events -------------------------------------------------------------
    weight = active_days * np.sqrt(seats)
    e_company = rng.choice(n, size=preset.usage_events, p=weight / weight.sum())
    e = len(e_company)
    e_ts = trial_start[e_company] + (rng.random(e) * active_days[e_company] * 86400).astype("timedelta64[s]")
    e_user_idx = first_contact_of(per_company)[e_company] + (rng.random(e) * per_company[e_company]).astype(int)
    names_arr = np.array(list(EVENT_CATALOG))
    freq = np.array(list(EVENT_CATALOG.values()), dtype=float)
    e_name = rng.choice(names_arr, size=e, p=freq / freq.sum())
    order = np.argsort(e_ts, kind="stable")
    e_company, e_ts, e_user_idx, e_name = e_company[order], e_ts[order], e_user_idx[order], e_name[order]
    delay = (rng.exponential(scale=20, size=e)).astype("timedelta64[s]")
    events = _frame(
        {
            "event_id": np.char.add("evt_", _tokens(rng, e, 20)),
            "event": e_name,
            "user_id": contacts["product_user_id"].to_numpy()[e_user_idx],
            "account_id": workspace[e_company],
            "timestamp": e_ts,
            "received_at": e_ts + delay,
            "plan": TIERS[tier_idx][e_company],
        }
    )

    return Company(
        as_of=as_of,
        companies=companies,
        contacts=contacts,
        deals=deals,
        prices=prices,
        subscriptions=subscriptions,
        invoices=invoices,
        charges=charges,
        refunds=refunds,
        tickets=tickets,
        satisfaction_ratings=satisfaction_ratings,
        events=events,
    )


def _frame(columns: dict) -> pl.DataFrame:
    """Build a polars frame; polars takes datetime64 only at ms/us/ns resolution."""
    return pl.DataFrame(
        {k: (v.astype("datetime64[us]") if isinstance(v, np.ndarray) and v.dtype.kind == "M" else v) for k, v in columns.items()}
    )


def first_contact_of(per_company: np.ndarray) -> np.ndarray:
    """Index of each company's first contact in the contacts table."""
    return np.cumsum(per_company) - per_company
