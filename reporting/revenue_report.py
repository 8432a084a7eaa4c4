"""The revenue and customer report: MRR, ARR, retention and churn for the as-of month, the MRR
bridge of that month, customers by status, plan and health, the customers most at risk and
feature adoption.

Every figure says the month or day it describes and links to its definition on the dbt docs
site published beside the report (`dbt_docs/index.html`). The headline figures and the
bridge are `reporting.figures`' own, so the report agrees with the Dagster UI and `spine run`.

Reads `serving` only: when an entity was held back, the report shows the version consumers
still read. The files written: `revenue.json` (layout in `revenue.schema.json`) and
`revenue.html` (self-contained: inline CSS and SVG charts, nothing fetched).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from data_spine.warehouse import PgConnection, Warehouse
from expectations.masking import mask
from expectations.suites import SUITES
from quality.alert_conditions import utc_iso
from reporting import figures
from reporting.figures import Connection, Figure, personal

TEMPLATES = Path(__file__).with_name("templates")
SCHEMA = Path(__file__).with_name("revenue.schema.json")

# The entities whose served tables the report reads, and the tables it reads of them.
ENTITIES = ("revenue", "customer", "usage_event")
TABLES_READ = ("mrr_bridge", "revenue_retention", "customers", "feature_adoption_daily")
# Without these there is no revenue to report; without the others their sections say so.
TABLES_REQUIRED = ("mrr_bridge", "revenue_retention")

# Relative to the reports folder, where the docs asset publishes the site.
DOCS_SITE = "dbt_docs/index.html"
DBT_PROJECT = "data_spine"
# dbt docs has no page for a doc block: a figure links to the model page whose description or
# columns carry its doc block (`doc('mrr')` is in mrr_by_customer_month's description).
DEFINED_IN = {
    "mrr": "mrr_by_customer_month",
    "arr": "mrr_by_customer_month",
    "paying_customers": "mrr_bridge",
    "nrr": "revenue_retention",
    "grr": "revenue_retention",
    "churned_customers": "mrr_bridge",
    "churned_mrr": "mrr_bridge",
    "logo_churn_rate": "revenue_retention",
    "mrr_trend": "mrr_bridge",
    "bridge": "mrr_bridge",
    "retention": "revenue_retention",
    "customers": "customers",
    "at_risk": "customers",
    "feature_adoption": "feature_adoption_daily",
}

AT_RISK_SHOWN = 10
HEALTH_BIN = 10  # points per bar of the health-score histogram
# The order `doc('customer_status')` explains them in.
STATUSES = ("active", "trial", "paused", "churned", "none")
# Movements that lower MRR, served as positive amounts.
LOSSES = frozenset({"contraction_mrr", "churned_mrr"})


class NothingServed(LookupError):
    """A table the report reads was never published: there is no served version to report on."""


def build_revenue_report(warehouse: Path | Warehouse, reports_dir: Path, as_of: date) -> dict:
    """Read the report from the warehouse's `serving` schema for ``as_of`` and write
    revenue.json and revenue.html into ``reports_dir``. Returns the report dict. ``warehouse``:
    the DuckDB file, or the warehouse whichever its target (`data_spine.warehouse`)."""
    if isinstance(warehouse, Path):
        warehouse = Warehouse("duckdb", warehouse, "")
    if not warehouse.is_postgres and not warehouse.duckdb_path.exists():
        raise NothingServed(f"no warehouse at {warehouse.duckdb_path}: nothing has been published to report on")
    with warehouse.connect(read_only=True) as con:
        missing = missing_tables(con)
        if set(missing) & set(TABLES_REQUIRED):
            raise NothingServed(_never_published(missing))
        report = read_report(con, as_of, unserved=frozenset(missing))
    write_report(report, reports_dir)
    return report


def missing_tables(con: Connection) -> list[str]:
    served = {
        name
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'serving'"
        ).fetchall()
    }
    return [table for table in TABLES_READ if table not in served]


def _never_published(missing: list[str]) -> str:
    entities = sorted({e for e, suite in SUITES.items() for t in missing if t in suite.publishes})
    tables = ", ".join(f"serving.{t}" for t in missing)
    return (
        f"revenue report: {tables} missing, the {' and '.join(entities)} "
        f"{'entity has' if len(entities) == 1 else 'entities have'} never been published; "
        "the report is written once a run publishes them"
    )


def read_report(con: Connection, as_of: date, unserved: frozenset[str] = frozenset()) -> dict:
    """The report's content; a section whose table was never published (`unserved`) is null,
    and the page says so: a first run that held the customer entity still reports revenue."""
    month = figures.as_of_month(con, as_of)
    customers_served = "customers" not in unserved
    return {
        "generated_at": utc_iso(datetime.now(UTC)),
        "as_of": as_of.isoformat(),
        "month": _iso(month),
        "docs_site": DOCS_SITE,
        "headline": {f.name: _figure(f) for f in figures.revenue(con, as_of)},
        "mrr_trend": {"definition": definition("mrr_trend"), "months": _mrr_trend(con, month)},
        "bridge": {"month": _iso(month), "definition": definition("bridge"), "steps": _bridge(con, as_of)},
        "retention": {"definition": definition("retention"), "months": _retention(con, month)},
        "not_served": sorted(unserved),
        "customers": (
            {"as_of": as_of.isoformat(), "definition": definition("customers"), **_customers(con)}
            if customers_served
            else None
        ),
        "at_risk": (
            {
                "as_of": as_of.isoformat(),
                "definition": definition("at_risk"),
                "shown": AT_RISK_SHOWN,
                "customers": _at_risk(con),
            }
            if customers_served
            else None
        ),
        "feature_adoption": (
            {"definition": definition("feature_adoption"), **_feature_adoption(con, as_of)}
            if "feature_adoption_daily" not in unserved
            else None
        ),
    }


def definition(name: str) -> str:
    return f"{DOCS_SITE}#!/model/model.{DBT_PROJECT}.{DEFINED_IN[name]}"


def _figure(f: Figure) -> dict:
    return {"label": f.label, "value": f.value, "unit": f.unit, "shown": f.shown(), "definition": definition(f.name)}


def _bridge(con: Connection, as_of: date) -> list[dict]:
    """The bridge's steps with signed amounts: what each adds to or takes from MRR."""
    steps = []
    for f in figures.bridge(con, as_of):
        if f.value is None:
            return []  # no revenue month yet
        total = f.name in ("opening_mrr", "closing_mrr")
        value = -f.value if f.name in LOSSES and f.value else f.value
        steps.append({"name": f.name, "label": f.label, "kind": "total" if total else "movement", "value": value})
    return steps


def _mrr_trend(con: Connection, month: date | None) -> list[dict]:
    rows = _rows(
        con,
        "select month, closing_mrr as mrr, closing_arr as arr, closing_customers as paying_customers "
        "from serving.mrr_bridge where month <= ? order by month",
        [month],
    )
    return [{**r, "month": _iso(r["month"]), "mrr": _num(r["mrr"]), "arr": _num(r["arr"])} for r in rows]


def _retention(con: Connection, month: date | None) -> list[dict]:
    rows = _rows(
        con,
        """
        select month, net_revenue_retention as nrr, gross_revenue_retention as grr,
               churned_customers, opening_customers, logo_churn_rate
        from serving.revenue_retention where month <= ? order by month
        """,
        [month],
    )
    return [{**r, "month": _iso(r["month"])} for r in rows]


def _customers(con: Connection) -> dict:
    rank = {s: i for i, s in enumerate(STATUSES)}
    by_status = sorted(_segments(con, "status"), key=lambda r: (rank.get(r["status"], len(rank)), str(r["status"])))
    by_plan = sorted(_segments(con, "plan_tier"), key=lambda r: (-r["customers"], str(r["plan_tier"])))
    return {"by_status": by_status, "by_plan_tier": by_plan, "health_scores": _health_scores(con)}


def _segments(con: Connection, column: str) -> list[dict]:
    rows = _rows(con, f"select {column}, count(*) as customers, sum(mrr) as mrr from serving.customers group by 1")
    return [{**r, "mrr": _num(r["mrr"]) or 0.0} for r in rows]


def _health_scores(con: Connection) -> dict:
    last = 100 // HEALTH_BIN - 1  # the top bar takes 100 too
    counts = dict(
        con.execute(
            f"select least({_floor_div(con, 'health_score', HEALTH_BIN)}, {last}) as bin, count(*) "
            "from serving.customers where health_score is not null group by 1"
        ).fetchall()
    )
    (unscored,) = con.execute("select count(*) from serving.customers where health_score is null").fetchone()
    bins = [
        {"low": b * HEALTH_BIN, "high": 100 if b == last else (b + 1) * HEALTH_BIN - 1, "customers": counts.get(b, 0)}
        for b in range(last + 1)
    ]
    return {"bins": bins, "unscored": unscored}


def _at_risk(con: Connection) -> list[dict]:
    """High risk first, then the most MRR at stake. Personal data is masked here, before any
    file is written."""
    rows = _rows(
        con,
        f"""
        select customer_id, company_name, plan_tier, mrr, health_score, churn_risk,
               primary_contact_name, primary_contact_email
        from serving.customers
        where churn_risk in ('high', 'medium')
        order by churn_risk = 'high' desc, mrr desc nulls last, health_score, {_bytewise(con, "customer_id")}
        limit {AT_RISK_SHOWN}
        """,
    )
    masked = personal("customers")
    return [{**{c: mask(v) if c in masked else v for c, v in r.items()}, "mrr": _num(r["mrr"])} for r in rows]


def _feature_adoption(con: Connection, as_of: date) -> dict:
    rows = _rows(
        con,
        f"""
        select activity_date, feature, feature_area, adoption_rate, customers_using, eligible_customers
        from serving.feature_adoption_daily
        where activity_date = (select max(activity_date) from serving.feature_adoption_daily where activity_date <= ?)
        order by adoption_rate desc nulls last, customers_using desc, {_bytewise(con, "feature")}
        """,
        [as_of],
    )
    day = rows[0]["activity_date"] if rows else None
    return {"day": _iso(day), "features": [{k: v for k, v in r.items() if k != "activity_date"} for r in rows]}


def write_report(report: dict, reports_dir: Path) -> None:
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "revenue.json").write_text(json.dumps(report, indent=2) + "\n")
    (reports_dir / "revenue.html").write_text(render_html(report))


# --- the waterfall --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    name: str
    label: str
    kind: str  # "total", "up" or "down"
    value: float  # signed: what the step adds to MRR (a total: the MRR itself)
    shown: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Waterfall:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, label) of the horizontal grid lines
    left: float
    right: float
    floor: float  # the MRR the axis starts at

    @property
    def floor_shown(self) -> str:
        return _usd_short(self.floor)

    @property
    def connectors(self) -> list[tuple[float, float, float]]:
        """(x1, x2, y): the dashed line carrying each bar's end level to the next bar."""
        lines = []
        for bar, after in zip(self.bars, self.bars[1:]):
            level = bar.y if bar.kind in ("total", "up") else bar.y + bar.height
            lines.append((bar.x + bar.width, after.x, level))
        return lines


def waterfall(steps: list[dict], width: int = 900, height: int = 320) -> Waterfall:
    """The bars of an MRR bridge: each total from the axis, each movement from the level the
    step before left."""
    left, right, top, bottom = 80.0, width - 10.0, 30.0, height - 40.0
    levels = _levels(steps)
    floor, ceiling, grid = _axis(levels)

    def y(value: float) -> float:
        return bottom - (value - floor) / (ceiling - floor) * (bottom - top)

    slot = (right - left) / max(len(steps), 1)
    bars = []
    for i, (step, before, after) in enumerate(zip(steps, [0.0, *levels], levels)):
        kind = "total" if step["kind"] == "total" else ("down" if step["value"] < 0 else "up")
        start = floor if kind == "total" else before
        bars.append(
            Bar(
                name=step["name"],
                label=step["label"],
                kind=kind,
                value=step["value"],
                shown=_signed_usd(step["value"], kind != "total"),
                x=left + slot * (i + 0.2),
                y=y(max(start, after)),
                width=slot * 0.6,
                height=max(y(min(start, after)) - y(max(start, after)), 0.0),
            )
        )
    ticks = [(y(floor + n * grid), _usd_short(floor + n * grid)) for n in range(round((ceiling - floor) / grid) + 1)]
    return Waterfall(width, height, bars, ticks, left, right, floor)


def _levels(steps: list[dict]) -> list[float]:
    """MRR after each step: a total sets it, a movement moves it."""
    levels, level = [], 0.0
    for step in steps:
        level = step["value"] if step["kind"] == "total" else level + step["value"]
        levels.append(level)
    return levels


def _axis(levels: list[float]) -> tuple[float, float, float]:
    """(floor, ceiling, grid step) of the amount axis. It starts at a round amount well below the
    lowest level rather than at zero: a month's movements are small beside its MRR, and would not
    show otherwise. The chart says where it starts."""
    low, high = min(levels), max(levels)
    spread = high - low or abs(high) or 1.0
    grid = _round_step(spread * 1.5 / 4)
    floor = max(math.floor((low - spread * 0.5) / grid) * grid, 0.0 if low >= 0 else -math.inf)
    ceiling = math.ceil((high + spread * 0.15) / grid) * grid
    return floor, ceiling, grid


def _round_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten: grid lines at round amounts."""
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _signed_usd(value: float, signed: bool) -> str:
    sign = ("+" if value >= 0 else "\u2212") if signed else ""
    return f"{sign}${abs(value):,.2f}"


def _usd_short(value: float) -> str:
    """An axis label: $1.75M, $162k, $250."""
    size, suffix = next(((size, suffix) for size, suffix in ((1e6, "M"), (1e3, "k")) if abs(value) >= size), (1, ""))
    return f"${value / size:,.2f}".rstrip("0").rstrip(".") + suffix


# --- charts ---------------------------------------------------------------------------------


def _pyplot():
    # matplotlib takes about a second to import and only the HTML report draws.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    return plt


def _svg(fig) -> str:
    plt = _pyplot()
    fig.tight_layout()
    buffer = io.StringIO()
    # Text stays text: smaller, selectable, and readable by a test.
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _months(points: list[dict]) -> list[date]:
    return [date.fromisoformat(p["month"]) for p in points]


def _date_axis(ax) -> None:
    from matplotlib import dates  # noqa: PLC0415

    ax.xaxis.set_major_locator(dates.AutoDateLocator(maxticks=10))
    ax.xaxis.set_major_formatter(dates.DateFormatter("%b %Y"))
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", color="#e4e7eb", linewidth=0.8)


def mrr_trend_svg(points: list[dict]) -> str:
    """MRR per month, with ARR (12 x MRR) on the right-hand axis: one line, two scales."""
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=96)
    months, mrr = _months(points), [p["mrr"] for p in points]
    ax.plot(months, mrr, color="#1c7ed6", marker="o", markersize=3, linewidth=1.8)
    ax.set_ylim(bottom=0)
    money = FuncFormatter(lambda v, _: _usd_short(v))
    ax.yaxis.set_major_formatter(money)
    ax.set_ylabel("MRR")
    arr = ax.secondary_yaxis("right", functions=(lambda m: m * 12, lambda a: a / 12))
    arr.yaxis.set_major_formatter(money)
    arr.set_ylabel("ARR (12 \u00d7 MRR)")
    _date_axis(ax)
    return _svg(fig)


def retention_svg(points: list[dict]) -> str:
    """NRR and GRR per month (trailing twelve months), 100% marked."""
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.0), dpi=96)
    for key, label, colour in (("nrr", "NRR", "#2b8a3e"), ("grr", "GRR", "#e8590c")):
        shown = [p for p in points if p[key] is not None]
        ax.plot(
            _months(shown), [p[key] for p in shown], marker="o", markersize=3, linewidth=1.8, label=label, color=colour
        )
    ax.axhline(1.0, color="#868e96", linewidth=0.8, linestyle="--")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    _date_axis(ax)
    return _svg(fig)


def logo_churn_svg(points: list[dict]) -> str:
    """Customers churned per month (bars) and the logo churn rate (line, right-hand axis)."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: PLC0415

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.0), dpi=96)
    months = _months(points)
    ax.bar(months, [p["churned_customers"] or 0 for p in points], width=20, color="#ffa8a8", label="churned customers")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("churned customers")
    rate = ax.twinx()
    shown = [p for p in points if p["logo_churn_rate"] is not None]
    rate.plot(
        _months(shown), [p["logo_churn_rate"] for p in shown], color="#c92a2a", marker="o", markersize=3, linewidth=1.5
    )
    rate.set_ylim(bottom=0)
    rate.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    rate.set_ylabel("logo churn rate")
    _date_axis(ax)
    return _svg(fig)


def health_svg(health: dict) -> str:
    """How many customers score in each band of ten health points."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.0), dpi=96)
    bins = health["bins"]
    ax.bar([f"{b['low']}\u2013{b['high']}" for b in bins], [b["customers"] for b in bins], color="#74c0fc")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("health score")
    ax.set_ylabel("customers")
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", color="#e4e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    return _svg(fig)


# --- rendering ------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["usd"] = lambda v: "n/a" if v is None else f"${v:,.2f}"
    env.filters["ratio"] = lambda v: "n/a" if v is None else f"{v:.1%}"
    env.filters["month"] = lambda v: date.fromisoformat(v).strftime("%B %Y") if v else "no month yet"
    env.filters["exact"] = lambda v: "" if v is None else repr(v)
    return env


def render_html(report: dict) -> str:
    charts = {
        "mrr_trend": mrr_trend_svg(report["mrr_trend"]["months"]),
        "retention": retention_svg(report["retention"]["months"]),
        "logo_churn": logo_churn_svg(report["retention"]["months"]),
    }
    if report["customers"]:
        charts["health"] = health_svg(report["customers"]["health_scores"])
    steps = report["bridge"]["steps"]
    return (
        _environment()
        .get_template("revenue.html.j2")
        .render(
            r=report,
            charts={name: markupsafe.Markup(svg) for name, svg in charts.items()},
            waterfall=waterfall(steps) if steps else None,
        )
    )


# --- helpers --------------------------------------------------------------------------------


def _rows(con: Connection, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, map(_plain, values), strict=True)) for values in cursor.fetchall()]


def _plain(value: Any) -> Any:
    """A number as JSON writes it, whichever warehouse typed it: PostgreSQL's sums and
    ratios come back as numeric (Decimal), DuckDB's as integers and doubles."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    return value


def _floor_div(con: Connection, expression: str, divisor: int) -> str:
    """Integer division rounding down: DuckDB's `//`; PostgreSQL's `/` truncates integers
    and keeps the fraction of numerics."""
    if isinstance(con, PgConnection):
        return f"CAST(floor({expression} / {divisor}.0) AS integer)"
    return f"{expression} // {divisor}"


def _bytewise(con: Connection, expression: str) -> str:
    """Text ordered by its characters' code points, as DuckDB orders it, whatever collation
    the PostgreSQL database was created with (ties in the report's lists break alike)."""
    return f'{expression} COLLATE "C"' if isinstance(con, PgConnection) else expression


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _num(value: Any) -> float | None:
    return None if value is None else float(value)
