"""Simulate the company's history as flat, vendor-neutral tables.

Everything is vectorised with NumPy and polars so the `large` preset (50k companies, 10M
events, 1M tickets) takes minutes, not hours. One seeded generator drives every draw, in a
fixed order, so a seed always produces the same company. Billing lives in `billing.py`,
support and usage in `activity.py`; vendor wire formats are applied later, in `vendors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import polars as pl

from sample_company import names
from sample_company.activity import simulate_activity
from sample_company.arrays import DAY, frame, seconds, tokens
from sample_company.billing import (
    CURRENCIES,
    CURRENCY_WEIGHTS,
    TIER_WEIGHTS,
    TIERS,
    USD_RATE,
    price_catalog,
    simulate_billing,
    unit_amount,
)
from sample_company.presets import Preset
from sample_company.variants import Variant

INDUSTRIES = np.array(
    ["software", "healthcare", "finance", "retail", "manufacturing", "education", "media", "logistics"]
)
OWNERS = np.array([70001, 70002, 70003, 70004, 70005, 70006])
JOB_TITLES = np.array(["Admin", "Manager", "Engineer", "Analyst", "Director"])
CONVERSION_RATE = 0.72


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

    @property
    def end(self) -> datetime:
        """The instant history stops: midnight at the start of the as-of date."""
        return datetime.combine(self.as_of, time(0))


def simulate(preset: Preset, seed: int, as_of: date, variant: Variant | None = None) -> Company:
    variant = variant or Variant()
    rng = np.random.default_rng(seed)
    end = np.datetime64(datetime.combine(as_of, time(0)), "s")
    start = end - preset.history_days * DAY
    n = preset.companies

    # --- Companies (the CRM's accounts) -------------------------------------------------
    created = np.sort(start + seconds(rng.random(n) * (preset.history_days - 7)))
    tier = rng.choice(3, size=n, p=TIER_WEIGHTS)
    currency = rng.choice(3, size=n, p=CURRENCY_WEIGHTS)
    annual = rng.random(n) < 0.3
    seats = np.maximum(1, np.round(rng.lognormal(mean=1.6 + 0.6 * tier, sigma=0.7, size=n))).astype(np.int64)
    industry = rng.choice(INDUSTRIES, size=n)
    owner = rng.choice(OWNERS, size=n)
    converts = rng.random(n) < CONVERSION_RATE
    company_names = names.company_names(rng, n)
    domains = names.domains(company_names)

    crm_id = pl.Series((10_000_001 + np.arange(n)).astype(str))
    stripe_customer = tokens(rng, n, "cus_")
    workspace = "ws_" + pl.Series(100_001 + np.arange(n)).cast(pl.String)
    zendesk_org = 360_000_001 + np.arange(n)

    billing = simulate_billing(
        rng,
        end,
        created,
        tier,
        seats,
        converts,
        currency,
        annual,
        stripe_customer,
        trials=variant.has_trials,
        coupons=variant.has_coupons,
    )
    spans = billing.spans
    subs = billing.subscriptions
    now = billing.current_span
    status_now = subs["status"].to_numpy()[now]
    paying = np.isin(status_now, ["active", "past_due", "unpaid"])
    trialing = status_now == "trialing"
    # ARR at list price, as sales books it: coupons are a billing matter.
    months = np.where(annual, 12, 1)
    arr = (
        subs["unit_amount"].to_numpy()[now]
        * subs["quantity"].to_numpy()[now]
        * (12 / months)
        / 100
        * USD_RATE[currency]
    )

    companies = frame(
        {
            "crm_company_id": crm_id,
            "name": company_names,
            "domain": domains,
            "industry": industry,
            "owner_id": owner.astype(str),
            "lifecycle_stage": np.where(trialing, "opportunity", np.where(converts, "customer", "other")),
            "crm_status": np.where(paying, "active", np.where(trialing, "trial", "churned")),
            "annual_revenue": np.round(np.where(paying, arr, 0.0), 2),
            "created_at": created,
            # A customer's CRM record changes whenever its owner logs activity or a rollup
            # (open deals, last contacted) is recomputed: days, not weeks, before the end of
            # its current subscription (exponential, mean 3 days, at most 30).
            "updated_at": np.maximum(created, spans.stop[now] - seconds(np.minimum(-3 * np.log1p(-rng.random(n)), 30))),
            "stripe_customer_id": stripe_customer,
            "workspace_id": workspace,
            "zendesk_organization_id": zendesk_org,
            "tier": subs["tier"].to_numpy()[now],
            "currency": CURRENCIES[currency],
        }
    )

    # --- Contacts (CRM contacts = product users = support requesters) -------------------
    per_company = 1 + rng.poisson(lam=np.minimum(seats, 12) / 3)
    company_of_contact = np.repeat(np.arange(n), per_company)
    m = len(company_of_contact)
    first, last = names.people(rng, m)
    # Systems stamp records when things happen: never after the history's end.
    contact_created = np.minimum(created[company_of_contact] + seconds(rng.random(m) * 20), end)
    contacts = frame(
        {
            "crm_contact_id": (20_000_001 + np.arange(m)).astype(str),
            "crm_company_id": crm_id.gather(company_of_contact),
            "first_name": first,
            "last_name": last,
            "email": names.emails(first, last, domains.gather(company_of_contact)),
            "job_title": JOB_TITLES[rng.integers(0, len(JOB_TITLES), size=m)],
            "created_at": contact_created,
            "updated_at": np.minimum(contact_created + seconds(rng.random(m) * 60), end),
            "zendesk_user_id": 380_000_001 + np.arange(m),
            "product_user_id": "usr_" + pl.Series(500_001 + np.arange(m)).cast(pl.String),
        }
    )

    # --- Deals: one per subscription; a win-back is sold again -------------------------
    s_company = spans.company
    deal_stage = np.where(
        spans.winback | converts[s_company],
        "closedwon",
        np.where(spans.trial_end > end, "contractsent", "closedlost"),
    )
    close = np.where(spans.winback | np.isnat(spans.trial_end), spans.start, spans.trial_end)
    # The amount is the annual list price of the plan the deal sold, in USD.
    sold = unit_amount(spans.tier, currency[s_company], annual[s_company]) * spans.seats
    deals = frame(
        {
            "crm_deal_id": (30_000_001 + np.arange(len(s_company))).astype(str),
            "crm_company_id": crm_id.gather(s_company),
            "deal_name": company_names.gather(s_company)
            + " - "
            + pl.Series(TIERS[spans.tier])
            + pl.Series(np.where(spans.winback, " (win-back)", "")),
            "amount": np.round(sold * 12 / months[s_company] / 100 * USD_RATE[currency[s_company]], 2),
            "deal_stage": deal_stage,
            "close_date": close,
            "created_at": np.where(spans.winback, spans.start - seconds(rng.random(len(s_company)) * 14), spans.start),
            "updated_at": np.minimum(close, end),
        }
    )

    activity = simulate_activity(
        rng, end, billing, preset.tickets, preset.usage_events, contacts, per_company, zendesk_org, workspace
    )
    return Company(
        as_of=as_of,
        companies=companies,
        contacts=contacts,
        deals=deals,
        prices=price_catalog(),
        subscriptions=subs,
        invoices=billing.invoices,
        charges=billing.charges,
        refunds=billing.refunds,
        tickets=activity.tickets,
        satisfaction_ratings=activity.satisfaction_ratings,
        events=activity.events,
    )
