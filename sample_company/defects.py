"""Known defects, injected into the sample company and recorded as ground truth.

Real sources are never clean: people mistype emails or leave fields blank, sales enters a
company twice, the CRM's ARR and status drift from billing, tickets point at organizations
that were never synced, clients send clock-skewed or misnamed events, events arrive days
late and a feed stops. Each defect class below hits a configurable share of the records it
can apply to (at least one record whenever its rate is above zero) and every affected id is
returned, so tests and the scorecard can be checked against the truth.

Defects are drawn from their own random stream: a company generated with defects is the
clean company with the same seed plus exactly the recorded changes. They never touch a
record's primary key, and never move an update timestamp (`updated_at`,
`hs_lastmodifieddate`, ...) past the end of history, which incremental loads rely on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta

import numpy as np
import polars as pl

from sample_company.simulate import Company

ISO_MS = "%Y-%m-%dT%H:%M:%S.000Z"
# Client clocks run ahead by up to a year; late events arrive up to ten days after they happened.
MAX_FUTURE_DAYS = 365
LATE_DAYS = (1, 10)
DUPLICATE_ID_BASE = 18_000_001
ORPHAN_ORGANIZATION_BASE = 370_000_001


# The check each injected defect class trips, and counts exactly: (manifest entity, defect
# class) -> (audit suite, check name). A run of the sample company with its defects fails these
# checks, and only these, by as many records as the manifest lists.
CHECKS_TRIPPED = {
    ("hubspot.companies", "crm_arr_mismatch"): ("customer", "crm_arr_matches_billing"),
    ("hubspot.companies", "crm_status_mismatch"): ("customer", "crm_status_matches_billing"),
    ("hubspot.companies", "duplicate_company"): ("customer", "crm_company_not_duplicated"),
    ("hubspot.companies", "missing_required_field"): ("customer", "crm_company_required_fields"),
    ("hubspot.contacts", "future_timestamp"): ("contact", "contact_created_not_in_future"),
    ("hubspot.contacts", "invalid_email"): ("contact", "crm_contact_email_valid"),
    ("hubspot.contacts", "missing_email"): ("contact", "crm_contact_email_present"),
    ("stripe.customers", "invalid_email"): ("contact", "billing_email_valid"),
    ("stripe.customers", "missing_email"): ("contact", "billing_email_present"),
    ("stripe.customers", "missing_required_field"): ("contact", "billing_name_present"),
    ("usage.events", "future_timestamp"): ("usage_event", "event_not_in_future"),
    ("usage.events", "late_event"): ("usage_event", "events_arrive_on_time"),
    ("usage.events", "malformed_event_name"): ("usage_event", "event_name_follows_convention"),
    ("zendesk.tickets", "missing_required_field"): ("ticket", "ticket_subject_present"),
    ("zendesk.tickets", "orphan_ticket"): ("ticket", "ticket_organization_known"),
}
# What else a defect class trips, not counted per record: checks whose failure it explains,
# dbt tests (by name prefix) and the datasets whose freshness alerts it raises.
ALSO_TRIPPED = {
    ("zendesk.tickets", "orphan_ticket"): {
        "dbt_tests": ("relationships_stg_zendesk__tickets_organization_id",),
    },
    # A customer's primary contact is one of its contacts, mistyped email included.
    ("hubspot.contacts", "invalid_email"): {"checks": (("customer", "primary_contact_email_valid"),)},
    ("stripe.customers", "invalid_email"): {"checks": (("customer", "primary_contact_email_valid"),)},
    ("usage.events", "stale_feed"): {
        # A stopped feed is counted in days without deliveries, and leaves the event marts stale.
        "checks": (
            ("usage_event", "events_received_every_day"),
            ("usage_event", "source_usage_events_fresh"),
            ("usage_event", "mart_usage_events_fresh"),
            ("usage_event", "mart_feature_adoption_daily_fresh"),
        ),
        "datasets": ("usage_events", "feature_adoption_daily"),
    },
}


@dataclass(frozen=True)
class DefectRates:
    """Share of the eligible records that get each defect.

    Emails: HubSpot contacts and Stripe customers. Missing required fields: a HubSpot
    company's industry or owner, a Stripe customer's name, a Zendesk ticket's subject.
    ARR mismatch: companies with a paying subscription. Status mismatch: companies whose
    subscriptions are all cancelled after paying. Future timestamps: usage events and HubSpot
    contacts' `createdate`. Late events: usage events older than the longest delay.
    """

    invalid_email: float = 0.02
    missing_email: float = 0.02
    missing_required_field: float = 0.01
    duplicate_company: float = 0.01
    crm_arr_mismatch: float = 0.05
    crm_status_mismatch: float = 0.05
    orphan_ticket: float = 0.005
    future_timestamp: float = 0.001
    malformed_event_name: float = 0.002
    late_event: float = 0.005
    # The usage feed delivers nothing in the last N days before the as-of date (0: never stops).
    stale_usage_feed_days: int = 3

    @classmethod
    def none(cls) -> DefectRates:
        return cls(**{f.name: 0 for f in fields(cls)})

    @property
    def enabled(self) -> bool:
        return any(v > 0 for v in asdict(self).values())

    @classmethod
    def parse(cls, spec: str | None) -> DefectRates:
        """`default`, `none` (a clean company), or comma-separated `name=value` overrides,
        optionally after `none,` or `default,` (e.g. `none,late_event=0.05`)."""
        rates = cls()
        for part in (p.strip() for p in (spec or "").split(",")):
            if part in ("", "default", "on"):
                continue
            if part in ("none", "off", "clean"):
                rates = cls.none()
                continue
            name, sep, value = part.partition("=")
            kinds = {f.name: f.type for f in fields(cls)}
            if not sep or name.strip() not in kinds:
                known = ", ".join(kinds)
                raise ValueError(
                    f"unknown defect setting {part!r}: use default, none or NAME=VALUE with NAME one of {known}"
                )
            number = int(value) if name.strip() == "stale_usage_feed_days" else float(value)
            if number < 0 or (isinstance(number, float) and number > 1):
                raise ValueError(f"defect rate {part!r} must be between 0 and 1 (days: 0 or more)")
            rates = replace(rates, **{name.strip(): number})
        return rates


DEFECT_NAMES = tuple(f.name for f in fields(DefectRates))


def _choose(rng: np.random.Generator, eligible: np.ndarray, rate: float) -> np.ndarray:
    """Sorted positions of ceil(rate x eligible) of the eligible rows (a boolean mask)."""
    candidates = np.flatnonzero(eligible)
    if rate <= 0 or not len(candidates):
        return np.array([], dtype=np.int64)
    k = min(len(candidates), math.ceil(rate * len(candidates)))
    return np.sort(rng.choice(candidates, size=k, replace=False))


def _variant(rng: np.random.Generator, n: int, variants: list[pl.Expr]) -> pl.Expr:
    """One of `variants` per row (of `n`), picked at random."""
    which = pl.lit(pl.Series(rng.integers(0, len(variants), size=n)))
    expr = variants[-1]
    for i, v in reversed(list(enumerate(variants[:-1]))):
        expr = pl.when(which == i).then(v).otherwise(expr)
    return expr


def _edit(
    df: pl.DataFrame, rows: np.ndarray, column: str, value: pl.Expr | pl.Series, nested: bool = False
) -> pl.DataFrame:
    """Set `column` (a field of `properties` when `nested`) on `rows` only.

    `value` is evaluated on those rows alone (a Series must have one value per row), so a
    defect on 0.1% of ten million events costs 0.1% of the work."""
    if not len(rows):
        return df
    table = df["properties"].struct.unnest() if nested else df
    if isinstance(value, pl.Series):
        new = value
    else:
        new = table[rows].select(value.alias(column)).to_series()
    column_values = table[column].clone().scatter(rows, new.cast(table[column].dtype))
    if not nested:
        return df.with_columns(column_values)
    return df.with_columns(properties=table.with_columns(column_values).to_struct())


def _invalid_email(rng: np.random.Generator, n: int, email: pl.Expr) -> pl.Expr:
    """Typical typos and form-field slips, each failing a standard email pattern."""
    return _variant(
        rng,
        n,
        [
            email.str.replace("@", "", literal=True),  # jane.doedomain.com
            email.str.replace(r"\.[a-z]+$", ""),  # jane.doe@domain
            email.str.replace("@", "@@", literal=True),  # jane.doe@@domain.com
            email.str.replace("@", " @", literal=True),  # jane.doe @domain.com
            email.str.replace(r"\.([a-z]+)$", ",$1"),  # jane.doe@domain,com
        ],
    )


def _ids(df: pl.DataFrame, rows: np.ndarray) -> list:
    return df["id"].gather(rows).to_list()


class Injector:
    def __init__(self, company: Company, frames: dict[str, dict[str, pl.DataFrame]], rates: DefectRates, seed: int):
        self.company = company
        self.frames = frames
        self.rates = rates
        # A stream of its own, so the clean company's draws stay untouched.
        self.rng = np.random.default_rng([seed, 0xDEFEC7])
        self.end = company.end
        self.records: dict[str, dict[str, list]] = {}
        self.stale: dict[str, dict] = {}

    def note(self, entity: str, defect: str, ids: list) -> None:
        if ids:
            self.records.setdefault(entity, {})[defect] = sorted(ids)

    def run(self) -> None:
        if not self.rates.enabled:
            return
        # Duplicates copy clean companies and come first; later defects may hit copies too.
        self.duplicate_companies()
        self.crm_drift()
        self.emails()
        self.missing_fields()
        self.orphan_tickets()
        self.future_contacts()
        self.usage()

    # --- CRM --------------------------------------------------------------------------
    def duplicate_companies(self) -> None:
        companies = self.frames["hubspot"]["companies"]
        rows = _choose(self.rng, np.ones(companies.height, bool), self.rates.duplicate_company)
        if not len(rows):
            return
        copies = companies[rows]
        k = copies.height
        new_ids = pl.Series((DUPLICATE_ID_BASE + np.arange(k)).astype(str))
        # Someone enters the company again weeks or months later, not linked to billing or product.
        created = (
            (
                copies["properties"].struct.field("createdate").str.to_datetime(ISO_MS, time_zone=None)
                + pl.Series(self.rng.uniform(30, 400, size=k) * 86400 * 1_000_000).cast(pl.Duration("us"))
            )
            .clip(upper_bound=self.end - timedelta(hours=1))
            .dt.strftime(ISO_MS)
        )
        name = pl.col("name")
        props = copies["properties"].struct.unnest()
        links = [pl.lit("").alias(c) for c in ("stripe_customer_id", "product_workspace_id") if c in props.columns]
        props = props.with_columns(
            _variant(self.rng, k, [name.str.to_uppercase(), name + ".", "The " + name, name.str.to_lowercase()]).alias(
                "name"
            ),
            *links,
            pl.lit(created).alias("createdate"),
            pl.lit(created).alias("hs_lastmodifieddate"),
            pl.lit(new_ids).alias("hs_object_id"),
        )
        copies = copies.with_columns(id=new_ids, properties=props.to_struct(), createdAt=created, updatedAt=created)
        self.frames["hubspot"]["companies"] = pl.concat([companies, copies])
        self.note("hubspot.companies", "duplicate_company", new_ids.to_list())

    def crm_drift(self) -> None:
        """ARR typed by hand that no longer matches billing; customers who left still 'active'."""
        companies = self.frames["hubspot"]["companies"]
        sim = self.company.companies
        n = sim.height  # duplicates, appended after the originals, are not linked to billing
        paying = np.zeros(companies.height, bool)
        paying[:n] = (sim["crm_status"] == "active").to_numpy()
        rows = _choose(self.rng, paying, self.rates.crm_arr_mismatch)
        factor = np.where(
            self.rng.random(len(rows)) < 0.5,
            self.rng.uniform(0.5, 0.85, len(rows)),
            self.rng.uniform(1.15, 1.8, len(rows)),
        )
        arr = pl.Series(np.round(sim["annual_revenue"].to_numpy()[rows] * factor, 2))
        companies = _edit(companies, rows, "annualrevenue", arr.cast(pl.String), nested=True)
        self.note("hubspot.companies", "crm_arr_mismatch", _ids(companies, rows))

        lapsed = np.zeros(companies.height, bool)
        lapsed[:n] = ((sim["crm_status"] == "churned") & (sim["lifecycle_stage"] == "customer")).to_numpy()
        rows = _choose(self.rng, lapsed, self.rates.crm_status_mismatch)
        # An account without the custom status property has no status to drift.
        if "customer_status" in {f.name for f in companies.schema["properties"].fields}:
            companies = _edit(companies, rows, "customer_status", pl.lit("active"), nested=True)
            self.note("hubspot.companies", "crm_status_mismatch", _ids(companies, rows))
        self.frames["hubspot"]["companies"] = companies

    # --- People -------------------------------------------------------------------------
    def emails(self) -> None:
        for entity, system, obj, nested in (
            ("hubspot.contacts", "hubspot", "contacts", True),
            ("stripe.customers", "stripe", "customers", False),
        ):
            df = self.frames[system][obj]
            everyone = np.ones(df.height, bool)
            invalid = _choose(self.rng, everyone, self.rates.invalid_email)
            everyone[invalid] = False
            missing = _choose(self.rng, everyone, self.rates.missing_email)
            df = _edit(df, invalid, "email", _invalid_email(self.rng, len(invalid), pl.col("email")), nested)
            df = _edit(df, missing, "email", pl.lit(None, pl.String), nested)
            self.frames[system][obj] = df
            self.note(entity, "invalid_email", _ids(df, invalid))
            self.note(entity, "missing_email", _ids(df, missing))

    def missing_fields(self) -> None:
        # HubSpot returns a cleared property as an empty string; Stripe and Zendesk send null.
        companies = self.frames["hubspot"]["companies"]
        rows = _choose(self.rng, np.ones(companies.height, bool), self.rates.missing_required_field)
        owner = np.zeros(companies.height, bool)
        owner[rows] = self.rng.random(len(rows)) < 0.5
        companies = _edit(companies, np.flatnonzero(owner), "hubspot_owner_id", pl.lit(""), nested=True)
        companies = _edit(companies, rows[~owner[rows]], "industry", pl.lit(""), nested=True)
        self.frames["hubspot"]["companies"] = companies
        self.note("hubspot.companies", "missing_required_field", _ids(companies, rows))

        for entity, system, obj, column in (
            ("stripe.customers", "stripe", "customers", "name"),
            ("zendesk.tickets", "zendesk", "tickets", "subject"),
        ):
            df = self.frames[system][obj]
            rows = _choose(self.rng, np.ones(df.height, bool), self.rates.missing_required_field)
            self.frames[system][obj] = _edit(df, rows, column, pl.lit(None, pl.String))
            self.note(entity, "missing_required_field", _ids(df, rows))

    def orphan_tickets(self) -> None:
        tickets = self.frames["zendesk"]["tickets"]
        rows = _choose(self.rng, np.ones(tickets.height, bool), self.rates.orphan_ticket)
        orphan = pl.Series(ORPHAN_ORGANIZATION_BASE + self.rng.integers(0, 1_000_000, size=len(rows)))
        self.frames["zendesk"]["tickets"] = _edit(tickets, rows, "organization_id", orphan)
        self.note("zendesk.tickets", "orphan_ticket", _ids(tickets, rows))

    def future_contacts(self) -> None:
        contacts = self.frames["hubspot"]["contacts"]
        rows = _choose(self.rng, np.ones(contacts.height, bool), self.rates.future_timestamp)
        future = self._future(len(rows)).dt.strftime(ISO_MS)
        self.frames["hubspot"]["contacts"] = _edit(contacts, rows, "createdate", future, nested=True)
        self.note("hubspot.contacts", "future_timestamp", _ids(contacts, rows))

    def _future(self, n: int) -> pl.Series:
        offset = self.rng.uniform(1, MAX_FUTURE_DAYS, size=n) * 86400 * 1_000_000
        return pl.Series(np.datetime64(self.end, "us") + offset.astype("timedelta64[us]"))

    # --- Usage feed -------------------------------------------------------------------
    def usage(self) -> None:
        events, self.company.events = self.company.events, None  # let the unfiltered copy go early
        days = self.rates.stale_usage_feed_days
        stop = self.end - timedelta(days=days)
        if days:
            events = events.filter(pl.col("received_at") < stop)
            self.stale["usage.events"] = {
                "days": days,
                "stopped_at": stop.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "last_received_at": events["received_at"].max().strftime("%Y-%m-%dT%H:%M:%SZ")
                if events.height
                else None,
            }
        n = events.height

        # Late events: only ones old enough that even the longest delay lands before the stop.
        old_enough = (events["timestamp"] < stop - timedelta(days=LATE_DAYS[1])).to_numpy()
        late = _choose(self.rng, old_enough, self.rates.late_event)
        delay = pl.Series(self.rng.uniform(*LATE_DAYS, size=len(late)) * 86400 * 1_000_000).cast(pl.Duration("us"))
        events = _edit(events, late, "received_at", events["timestamp"].gather(late) + delay)

        not_late = np.ones(n, bool)
        not_late[late] = False
        future = _choose(self.rng, not_late, self.rates.future_timestamp)
        events = _edit(events, future, "timestamp", self._future(len(future)))

        malformed = _choose(self.rng, np.ones(n, bool), self.rates.malformed_event_name)
        parts = pl.col("event").str.split(".")
        domain, action, obj = (parts.list.get(i) for i in range(3))
        bad_name = _variant(
            self.rng,
            len(malformed),
            [
                action.str.to_titlecase() + " " + obj.str.to_titlecase(),  # "Viewed Dashboard"
                action + "." + obj,  # the domain left out
                pl.col("event").str.replace_all(".", "_", literal=True),  # app_viewed_dashboard
                domain + pl.concat_str(action.str.to_titlecase(), obj.str.to_titlecase()).str.replace_all("_", ""),
            ],
        )
        events = _edit(events, malformed, "event", bad_name)
        self.company.events = events
        ids = events["event_id"]
        self.note("usage.events", "late_event", ids.gather(late).to_list())
        self.note("usage.events", "future_timestamp", ids.gather(future).to_list())
        self.note("usage.events", "malformed_event_name", ids.gather(malformed).to_list())

    def manifest(self) -> dict:
        return {
            "enabled": self.rates.enabled,
            "rates": asdict(self.rates),
            "records": self.records,
            "stale_feeds": self.stale,
        }


def inject(company: Company, frames: dict[str, dict[str, pl.DataFrame]], rates: DefectRates, seed: int) -> dict:
    """Apply `rates` to the vendor frames (in place) and to `company.events`; return the
    manifest's `defects` section: the rates and, per entity and defect class, the ids hit."""
    injector = Injector(company, frames, rates, seed)
    injector.run()
    return injector.manifest()
