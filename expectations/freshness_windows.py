"""How fresh each source and each mart must be: declared once, used twice.

Each window (warn after, fail after) becomes
- a Dagster freshness policy on the source's raw assets or on the mart's asset, judged by the
  freshness daemon against the wall clock: how long since the last successful load or build;
- a timeliness check in the suite of the entity that owns it, judged against the as-of time:
  how old the newest data in the table is. A feed that still loads but delivers nothing new
  passes the first and fails the second.

`newest` is the SQL expression, over `relation`, for the latest instant the data covers:
for a table by day or month that is the end of its last day or month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from expectations.suite import DATA_ENG, FINANCE, PRODUCT, SALES_CS, SUPPORT, Batch, check, where

DAILY = (timedelta(hours=26), timedelta(hours=50))  # loaded or rebuilt every morning


@dataclass(frozen=True)
class Freshness:
    name: str  # source name or mart name
    kind: str  # "source" or "mart"
    warn: timedelta
    fail: timedelta
    entity: str  # whose suite checks the data against the window
    owner: str
    relation: str | None = None  # None: no timestamp to judge the data by (policy only)
    newest: str | None = None

    @property
    def key(self) -> str:
        """`source:<name>` or `mart:<name>` (a source and a mart may share a name)."""
        return f"{self.kind}:{self.name}"

    @property
    def check_name(self) -> str:
        """The name of the timeliness check that judges this window in its entity's suite."""
        return f"{self.kind}_{self.name}_fresh"

    @property
    def warn_hours(self) -> float:
        return self.warn.total_seconds() / 3600

    @property
    def fail_hours(self) -> float:
        return self.fail.total_seconds() / 3600

    def state(self, age_hours: float | None) -> str:
        """`ok`, `warn` or `fail` for data that is `age_hours` old (None: no data at all)."""
        if age_hours is None or age_hours > self.fail_hours:
            return "fail"
        return "warn" if age_hours > self.warn_hours else "ok"


def _source(name, entity, relation, newest, warn=DAILY[0], fail=DAILY[1]):
    return Freshness(name, "source", warn, fail, entity, DATA_ENG, relation, newest)


def _mart(name, entity, owner, newest=None, warn=DAILY[0], fail=DAILY[1]):
    return Freshness(name, "mart", warn, fail, entity, owner, f"marts.{name}" if newest else None, newest)


_MONTH_END = "max(month) + interval '1 month'"
_DAY_END = "max(activity_date) + interval '1 day'"

# The SaaS sources are loaded daily: a missed day warns, two fail. Usage events arrive all
# day long and the landing-folder sensor loads them as they come, so they are held tighter.
SOURCES: dict[str, Freshness] = {
    f.name: f
    for f in (
        _source("hubspot", "customer", "staging.stg_hubspot__companies", "max(updated_at)"),
        _source("stripe", "invoice", "staging.stg_stripe__invoices", "max(created_at)"),
        _source("zendesk", "ticket", "staging.stg_zendesk__tickets", "max(updated_at)"),
        _source(
            "usage_events",
            "usage_event",
            "staging.stg_usage_events__events",
            "max(received_at)",
            warn=timedelta(hours=6),
            fail=timedelta(hours=26),
        ),
    )
}

# Every mart is rebuilt by the daily run.
MARTS: dict[str, Freshness] = {
    f.name: f
    for f in (
        _mart("customers", "customer", SALES_CS, "max(source_updated_at)"),
        _mart("customer_crosswalk", "customer", DATA_ENG),
        _mart("identity_resolution_metrics", "customer", DATA_ENG),
        _mart("contacts", "contact", SALES_CS, "max(updated_at)"),
        _mart("mrr_by_customer_month", "revenue", FINANCE, _MONTH_END),
        _mart("revenue_movements", "revenue", FINANCE, _MONTH_END),
        _mart("mrr_bridge", "revenue", FINANCE, _MONTH_END),
        _mart("revenue_retention", "revenue", FINANCE, _MONTH_END),
        _mart("mrr_reconciliation", "revenue", FINANCE, _MONTH_END),
        _mart("invoices", "invoice", FINANCE, "max(created_at)"),
        _mart("ticket_metrics", "ticket", SUPPORT, "max(updated_at)"),
        _mart("support_backlog_daily", "ticket", SUPPORT, _DAY_END),
        _mart("usage_events", "usage_event", PRODUCT, "max(received_at)"),
        _mart("feature_adoption_daily", "usage_event", PRODUCT, _DAY_END),
    )
}


def by_check_name() -> dict[str, Freshness]:
    """Every window that a timeliness check judges, by that check's name."""
    return {f.check_name: f for f in (*SOURCES.values(), *MARTS.values()) if f.relation}


def judged_by(entity: str) -> list[Freshness]:
    """The windows whose data the `entity` suite checks: its sources first, then its marts."""
    return [f for f in (*SOURCES.values(), *MARTS.values()) if f.entity == entity and f.relation]


def timeliness_batch(entity: str) -> Batch | None:
    """One row per window the entity judges (its age at the as-of time) and one check each.

    An empty table has no newest row: its age is infinite, so it fails its window."""
    windows = judged_by(entity)
    if not windows:
        return None
    rows = "\n            union all\n".join(
        f"            select '{f.key}' as name, '{f.relation}' as relation,\n"
        f"                (select cast({f.newest} as timestamp) from {f.relation}) as newest_at"
        for f in windows
    )
    sql = f"""
        select name, relation, newest_at,
            coalesce(
                (date_part('epoch', $as_of) - date_part('epoch', newest_at)) / 3600.0,
                cast('infinity' as double precision)
            ) as age_hours
        from (
{rows}
        ) as windows
    """
    checks = tuple(
        check(
            f.check_name,
            "timeliness",
            "warning",
            f.owner,
            "expect_column_values_to_be_between",
            f"{f.kind.capitalize()} {f.name}: newest data at most {f.warn_hours:g} h older than the "
            f"as-of time (alerts escalate past {f.fail_hours:g} h)",
            causes=STALE_CAUSES[f.kind],
            action=STALE_ACTION[f.kind],
            column="age_hours",
            max_value=f.warn_hours,
            **where("name", f.key),
        )
        for f in windows
    )
    return Batch("freshness", sql, checks, key=("name",))


STALE_CAUSES = {
    "source": (
        "the source stopped delivering (an outage at the vendor or in the event collector)",
        "the connector fails, or the schedule or sensor that loads it is off",
    ),
    "mart": ("the daily run did not rebuild the mart", "the sources it is built from are stale"),
}
STALE_ACTION = {
    "source": "Check the source's last load and its connector's logs in Dagster; ask the source's "
    "owner whether it still sends data.",
    "mart": "Check the last run of the mart in Dagster and the freshness of its sources.",
}
