"""The figures a person checks first, read from `serving` for an as-of day.

One definition of each figure serves every screen that shows it: the serving assets'
metadata in Dagster, the summary `spine run` prints and the revenue report, so they agree.
Each is documented on the dbt docs site (`doc('mrr')`, `doc('retention')`, `doc('health_score')`, ...).

The queries run on either warehouse (`data_spine.warehouse`): the connection is DuckDB's or
`PgConnection`, and the SQL is what both read alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from data_spine.warehouse import PgConnection
from expectations.masking import mask
from privacy.classification import personal_columns

Connection = duckdb.DuckDBPyConnection | PgConnection


def personal(table: str) -> frozenset[str]:
    """The served table's columns that hold personal data, as their classification declares
    (privacy.classification): masked wherever rows are previewed, so a new personal column
    is masked the day it is declared."""
    return frozenset(c.name for c in personal_columns("serving", table))


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | int | None
    label: str
    unit: str = ""  # "usd", "ratio" or "" (a count)

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "usd":
            return f"${self.value:,.2f}"
        if self.unit == "ratio":
            return f"{self.value:.1%}"
        return f"{self.value:,}"


def as_of_month(con: Connection, as_of: date) -> date | None:
    """The month the revenue figures describe: the as-of day's, or the latest month before it
    that the bridge has (a company whose history ends earlier)."""
    row = _one(con, "select max(month) from serving.mrr_bridge where month <= date_trunc('month', ?::date)", [as_of])
    return row[0] if row else None


def revenue(con: Connection, as_of: date) -> list[Figure]:
    month = as_of_month(con, as_of)
    row = (
        _one(
            con,
            """
        select b.closing_mrr, b.closing_arr, b.closing_customers, b.churned_customers, b.churned_mrr,
               r.net_revenue_retention, r.gross_revenue_retention, r.logo_churn_rate
        from serving.mrr_bridge b left join serving.revenue_retention r using (month)
        where b.month = ?
        """,
            [month],
        )
        or (None,) * 8
    )
    mrr, arr, customers, churned, churned_mrr, nrr, grr, logo_churn = row
    return [
        Figure("mrr", _num(mrr), "MRR", "usd"),
        Figure("arr", _num(arr), "ARR", "usd"),
        Figure("paying_customers", _int(customers), "paying customers"),
        Figure("nrr", _num(nrr), "NRR (12 months)", "ratio"),
        Figure("grr", _num(grr), "GRR (12 months)", "ratio"),
        Figure("churned_customers", _int(churned), "customers churned this month"),
        Figure("churned_mrr", _num(churned_mrr), "MRR churned this month", "usd"),
        Figure("logo_churn_rate", _num(logo_churn), "logo churn this month", "ratio"),
    ]


def bridge(con: Connection, as_of: date) -> list[Figure]:
    """The as-of month's MRR bridge, in its order: opening, the five movements, closing. Losses
    are positive amounts, as served (`doc('revenue_movements')`)."""
    columns = {
        "opening_mrr": "opening MRR",
        "new_mrr": "new",
        "expansion_mrr": "expansion",
        "reactivation_mrr": "reactivation",
        "contraction_mrr": "contraction",
        "churned_mrr": "churn",
        "closing_mrr": "closing MRR",
    }
    row = _one(con, f"select {', '.join(columns)} from serving.mrr_bridge where month = ?", [as_of_month(con, as_of)])
    values = row or (None,) * len(columns)
    return [
        Figure(name, _num(value), label, "usd") for (name, label), value in zip(columns.items(), values, strict=True)
    ]


def customer(con: Connection, as_of: date) -> list[Figure]:
    accounts, active, at_risk = _one(
        con,
        """
        select count(*), count(*) filter (where status = 'active'),
               count(*) filter (where churn_risk in ('medium', 'high'))
        from serving.customers
        """,
    )
    return [
        Figure("customers", _int(accounts), "customers (every account)"),
        Figure("active_customers", _int(active), "active customers"),
        Figure("customers_at_risk", _int(at_risk), "customers at medium or high churn risk"),
    ]


def ticket(con: Connection, as_of: date) -> list[Figure]:
    open_tickets, urgent = _one(
        con,
        "select count(*) filter (where is_open), count(*) filter (where is_open and priority = 'urgent') "
        "from serving.ticket_metrics",
    )
    return [
        Figure("open_tickets", _int(open_tickets), "open tickets"),
        Figure("open_urgent_tickets", _int(urgent), "open urgent tickets"),
    ]


def usage_event(con: Connection, as_of: date) -> list[Figure]:
    events, active = _one(
        con,
        """
        select count(*),
               count(distinct customer_id) filter (
                   where is_product_event and occurred_at >= ?::date - interval '30 days' and occurred_at < ?::date)
        from serving.usage_events
        """,
        [as_of, as_of],
    )
    return [
        Figure("events", _int(events), "usage events"),
        Figure("active_accounts_30d", _int(active), "customers active in the last 30 days"),
    ]


def invoice(con: Connection, as_of: date) -> list[Figure]:
    (invoices,) = _one(con, "select count(*) from serving.invoices")
    return [Figure("invoices", _int(invoices), "invoices")]


def contact(con: Connection, as_of: date) -> list[Figure]:
    (contacts,) = _one(con, "select count(*) from serving.contacts")
    return [Figure("contacts", _int(contacts), "contacts")]


# The figures of each served entity (an audit suite's entity).
BY_ENTITY = {
    "customer": customer,
    "revenue": revenue,
    "ticket": ticket,
    "usage_event": usage_event,
    "invoice": invoice,
    "contact": contact,
}


def figures(con: Connection, entity: str, as_of: date) -> list[Figure]:
    read = BY_ENTITY.get(entity)
    return read(con, as_of) if read else []


def headline(con: Connection, as_of: date) -> list[Figure]:
    """What the end of a run shows first: customers, MRR, ARR, NRR and this month's churn."""
    by_name = {f.name: f for f in [*revenue(con, as_of), *customer(con, as_of)]}
    names = ("active_customers", "mrr", "arr", "nrr", "churned_customers", "churned_mrr")
    return [by_name[n] for n in names]


# What a preview of a served table shows first: the columns a person reads, in which order.
# A table not named here shows its first columns in no order.
PREVIEWS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "customers": (
        ("company_name", "status", "plan_tier", "mrr", "health_score", "churn_risk", "primary_contact_email"),
        "mrr desc nulls last, customer_id",
    ),
    "mrr_bridge": (
        ("month", "opening_mrr", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "closing_mrr"),
        "month desc",
    ),
    "revenue_retention": (
        ("month", "net_revenue_retention", "gross_revenue_retention", "logo_churn_rate"),
        "month desc",
    ),
    "mrr_by_customer_month": (("month", "customer_id", "mrr", "arr"), "month desc, mrr desc, customer_id"),
    "revenue_movements": (("month", "customer_id", "movement", "mrr_change"), "month desc, abs(mrr_change) desc"),
    "ticket_metrics": (("ticket_id", "status", "priority", "subject", "created_at"), "created_at desc, ticket_id"),
    "support_backlog_daily": (
        ("activity_date", "tickets_opened", "tickets_solved", "open_tickets"),
        "activity_date desc",
    ),
    "usage_events": (("received_at", "customer_id", "event_type", "event_name", "user_id"), "received_at desc"),
    "feature_adoption_daily": (
        ("activity_date", "feature", "customers_using", "adoption_rate"),
        "activity_date desc, customers_using desc",
    ),
    "invoices": ((), None),
    "contacts": (("contact_role", "full_name", "email", "customer_id"), None),
}
PREVIEW_COLUMNS = 8


def preview(con: Connection, table: str, limit: int = 5) -> str:
    """The first rows of a served table as a Markdown table, personal data masked."""
    columns, order_by = PREVIEWS.get(table, ((), None))
    if not columns:
        columns = tuple(
            name
            for (name,) in con.execute(
                "select column_name from information_schema.columns where table_catalog = current_database() "
                "and table_schema = 'serving' and table_name = ? order by ordinal_position limit ?",
                [table, PREVIEW_COLUMNS],
            ).fetchall()
        )
    order = f" order by {order_by}" if order_by else ""
    select = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    rows = con.execute(f'select {select} from serving."{table}"{order} limit {int(limit)}').fetchall()
    masked = personal(table)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        # A person's id may be a number (Zendesk's): masked as text like any other.
        cells = [
            _cell(mask(v if v is None else str(v)) if c in masked else v) for c, v in zip(columns, row, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def served_metadata(con: Connection, entity: str, tables: list[str], as_of: date) -> dict[str, dict[str, Any]]:
    """What each served table's materialization shows in the Dagster UI: its entity's figures
    (numbers, so the UI plots them over runs; read once for all its tables) and a preview of
    its first rows."""
    numbers = {f.name: f.value for f in figures(con, entity, as_of) if f.value is not None}
    return {table: {**numbers, "preview": preview(con, table)} for table in tables}


def _one(con: Connection, sql: str, params: list | None = None) -> tuple | None:
    """The first row of a query, its result consumed (DuckDB holds a connection's unfinished result)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = f"{value:,.2f}" if isinstance(value, float | Decimal) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 40 else text[:39] + "…"


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
