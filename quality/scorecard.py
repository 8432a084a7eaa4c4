"""The data-quality scorecard: per entity a score per dimension and overall, the trend over
past runs, the failing checks with sample records, what is published, and the alerts.

Scores (see README.md): a check scores ``100 * (1 - unexpected / evaluated)``; a dimension
is the mean of its checks; an entity's overall score is the mean of its dimensions; the
scorecard's overall score is the mean of the entities'. Bands follow the governance
reference: green >= 95 (healthy), yellow 90-95 (warning), red < 90 (critical).

Each entity is scored on its latest audit. The files written: `scorecard.json` (layout in
`scorecard.schema.json`), `scorecard.html` (self-contained: inline CSS and an inline SVG
chart, nothing fetched) and `scorecard.md` (a digest for chat or email). The audits render
their Great Expectations Data Docs pages; the scorecard rebuilds the site's index, once per
run, and links each entity's pages and each failing check's (`expectations.gx_data_docs`).

Alert delivery (per channel: delivered, owed since when, set aside) is read from the alert
state when the scorecard is written, which in a run is before that run's alerts are
dispatched; whatever dispatches them afterwards (`spine run`, `spine alerts`) rewrites that
section with the state after its dispatch (`refresh_alert_delivery`). The section says which
of the two it shows.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean
from typing import Any

import jinja2
import markupsafe

from data_spine.warehouse import Warehouse
from expectations.dialects import MISSING_TABLE, warehouse_of
from expectations.escaping import CONTROL, markdown_text
from expectations.gx_data_docs import SITE, build_index, page_file, page_url
from expectations.runner import ALL_ROWS, RESULTS_TABLE, failing_since
from expectations.suite import DIMENSIONS
from expectations.suites import SUITES
from quality.alert_conditions import (
    ChannelDelivery,
    Condition,
    audit_conditions,
    drift_condition,
    utc_iso,
    volume_condition,
)
from quality.publishing import PUBLICATIONS_TABLE
from quality.source_monitors import current_drifts, latest_volumes

# (band, inclusive lower bound, label), best first.
BANDS = (("green", 95.0, "Healthy"), ("yellow", 90.0, "Warning"), ("red", 0.0, "Critical"))
TEMPLATES = Path(__file__).with_name("templates")
SCHEMA = Path(__file__).with_name("scorecard.schema.json")
TREND_RUNS = 30
FAILING_SHOWN = 25  # per entity in the Markdown digest


def band(score: float) -> str:
    for name, lower, _ in BANDS:
        if score >= lower:
            return name
    return BANDS[-1][0]


def bands_legend() -> dict[str, dict[str, Any]]:
    legend: dict[str, dict[str, Any]] = {}
    upper = None
    for name, lower, label in BANDS:
        entry: dict[str, Any] = {"label": label}
        if lower > 0:
            entry["min"] = lower
        if upper is not None:
            entry["max"] = upper
        legend[name] = entry
        upper = lower
    return legend


# What the alert-delivery section shows: the state read when the scorecard was built, or after
# a dispatch that followed it.
BEFORE_DISPATCH = "before_dispatch"
AFTER_DISPATCH = "after_dispatch"
_DELIVERY_NOTES = {
    BEFORE_DISPATCH: "As it stood when this scorecard was written, before this run's alerts were dispatched: "
    "anything owed is from earlier dispatches. The alerts above go out after the scorecard "
    "(by `spine run`, or the alerts sensor of `dagster dev`).",
    AFTER_DISPATCH: "As it stood after the dispatch that followed this scorecard (`spine run` or `spine alerts`): "
    "owed deliveries are retried by the next run, `spine alerts` or the alerts sensor.",
}


def build_scorecard(
    warehouse_path: Warehouse | Path, reports_dir: Path, delivery: dict[str, ChannelDelivery] | None = None
) -> dict:
    """Score every entity's latest audit and write scorecard.json, .html and .md into
    ``reports_dir``, with ``delivery`` (`AlertStore.delivery()`) as the alert-delivery state
    before this run's dispatch. Returns the scorecard dict."""
    with warehouse_of(warehouse_path).connect(read_only=True) as con:
        rows = _query(
            con,
            f"""
            SELECT * FROM {RESULTS_TABLE}
            WHERE (entity, run_id) IN (
                SELECT entity, run_id FROM (
                    SELECT entity, run_id,
                           row_number() OVER (PARTITION BY entity ORDER BY validated_at DESC) AS latest
                    FROM {RESULTS_TABLE}
                ) AS audits
                WHERE latest = 1)
        """,
            missing=f"no validation results in {warehouse_path}: audit the marts first",
        )
        if not rows:
            raise LookupError(f"{RESULTS_TABLE} in {warehouse_path} is empty: audit the marts first")
        history = _query(
            con,
            f"""
            SELECT run_id, entity, dimension, success, element_count, unexpected_count,
                   max(validated_at) OVER (PARTITION BY run_id, entity) AS validated_at
            FROM {RESULTS_TABLE}
            WHERE run_id IN (SELECT run_id FROM {RESULTS_TABLE} GROUP BY run_id
                             ORDER BY max(validated_at) DESC LIMIT {TREND_RUNS})
        """,
        )
        since = failing_since(con, rows)
        publications = _query(
            con,
            f"""
            SELECT entity, status, coalesce(audit_run_id, run_id) AS audit_run_id, serving_run_id, reason,
                   run_id AS decided_in_run, audit_run_id IS NULL AS unaudited, published_at
            FROM (
                SELECT *,
                       row_number() OVER (PARTITION BY entity ORDER BY decided_at DESC) AS latest,
                       max(CASE WHEN status = 'published' THEN decided_at END)
                           OVER (PARTITION BY entity) AS published_at
                FROM {PUBLICATIONS_TABLE}
            ) AS decisions
            WHERE latest = 1
        """,
        )
        conditions = _conditions(con, rows, since)
    try:
        index = build_index(reports_dir)
    except Exception as exc:  # noqa: BLE001 - whatever GX's renderer or the disk raised
        # The scorecard is the report of last resort: it is written without the index's link.
        warnings.warn(f"the Data Docs index was not rebuilt: {exc}", stacklevel=2)
        index = None
    docs = DataDocs(f"{SITE}/index.html" if index else None, data_docs_pages(rows, reports_dir))
    scorecard = score_results(rows, history, since, publications, conditions, delivery, docs)
    write_reports(scorecard, reports_dir)
    return scorecard


@dataclass(frozen=True)
class DataDocs:
    """Links, relative to the reports folder, into the Great Expectations Data Docs."""

    index: str | None = None
    # (entity, batch) -> the page of the batch's validation in the entity's latest audit.
    pages: dict[tuple[str, str], str] = field(default_factory=dict)


def data_docs_pages(rows: list[dict], reports_dir: Path) -> dict[tuple[str, str], str]:
    """The Data Docs page of each batch of the audits scored, for the pages that exist (an audit
    run without a reports folder, or older than the pages kept, has none)."""
    pages = {}
    for r in rows:
        audit = (r["entity"], r["run_id"], r["validated_at"], r["table_name"])
        if (r["entity"], r["table_name"]) not in pages and page_file(reports_dir, *audit).exists():
            pages[(r["entity"], r["table_name"])] = page_url(*audit)
    return pages


def refresh_alert_delivery(reports_dir: Path, delivery: dict[str, ChannelDelivery]) -> dict | None:
    """Rewrite the scorecard's alert-delivery section with the state after a dispatch; the
    rest stays as the run wrote it. Nothing to do without a scorecard."""
    path = reports_dir / "scorecard.json"
    if not path.exists():
        return None
    scorecard = json.loads(path.read_text())
    scorecard["alert_delivery"] = alert_delivery(delivery, AFTER_DISPATCH)
    write_reports(scorecard, reports_dir)
    return scorecard


def alert_delivery(delivery: dict[str, ChannelDelivery] | None, moment: str = BEFORE_DISPATCH) -> dict:
    return {
        "read_at": utc_iso(datetime.now(UTC)),
        "moment": moment,
        "note": _DELIVERY_NOTES[moment],
        "owed": sum(d.owed for d in (delivery or {}).values()),
        "channels": [d.to_json() for d in (delivery or {}).values()],
    }


def write_reports(scorecard: dict, reports_dir: Path) -> None:
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "scorecard.json").write_text(json.dumps(scorecard, indent=2) + "\n")
    (reports_dir / "scorecard.html").write_text(render_html(scorecard))
    (reports_dir / "scorecard.md").write_text(render_markdown(scorecard))


def check_score(row: dict) -> float:
    if row["element_count"] == 0:
        return 100.0 if row["success"] else 0.0
    return 100.0 * (1 - row["unexpected_count"] / row["element_count"])


def entity_score(rows: list[dict]) -> tuple[float, dict[str, dict]]:
    dimensions = {}
    for dim in DIMENSIONS:
        checks = [r for r in rows if r["dimension"] == dim]
        if checks:
            score = _rounded(fmean(check_score(r) for r in checks))
            dimensions[dim] = {
                "score": score,
                "band": band(score),
                "checks": len(checks),
                "failed": sum(not r["success"] for r in checks),
            }
    return _rounded(fmean(d["score"] for d in dimensions.values())), dimensions


def score_results(
    rows: list[dict],
    history: list[dict] | None = None,
    since: dict[tuple[str, str], datetime] | None = None,
    publications: list[dict] | None = None,
    conditions: list[Condition] | None = None,
    delivery: dict[str, ChannelDelivery] | None = None,
    docs: DataDocs = DataDocs(),
) -> dict:
    """The scorecard of the latest result rows of each entity (pure: no I/O)."""
    since = since or {}
    published = {p["entity"]: p for p in publications or []}
    known = list(SUITES)
    names = sorted({r["entity"] for r in rows}, key=lambda e: (known.index(e) if e in known else len(known), e))
    entities = {}
    for entity in names:
        mine = [r for r in rows if r["entity"] == entity]
        overall, dimensions = entity_score(mine)
        failing = sorted(
            (r for r in mine if not r["success"]), key=lambda r: (r["severity"] != "blocking", check_score(r))
        )
        suite = SUITES.get(entity)
        pub = published.get(entity)
        entities[entity] = {
            "run_id": mine[0]["run_id"],
            "validated_at": _iso(max(r["validated_at"] for r in mine)),
            "owner": suite.owner if suite else None,
            "description": suite.description if suite else None,
            "overall": {"score": overall, "band": band(overall)},
            "dimensions": dimensions,
            "checks": {
                "total": len(mine),
                "failed": len(failing),
                "blocking_failed": sum(r["severity"] == "blocking" for r in failing),
            },
            "publication": _publication(pub, mine[0]["run_id"]),
            "data_docs": [
                {"table": table, "url": docs.pages[(entity, table)]}
                for table in _batches(suite, mine)
                if (entity, table) in docs.pages
            ],
            "failing_checks": [
                _failing(r, suite, since.get((entity, r["check_name"])), docs.pages.get((entity, r["table_name"])))
                for r in failing
            ],
        }
    overall = _rounded(fmean(e["overall"]["score"] for e in entities.values())) if entities else 0.0
    latest = max(rows, key=lambda r: r["validated_at"]) if rows else None
    return {
        "generated_at": utc_iso(datetime.now(UTC)),
        "run_id": latest["run_id"] if latest else None,
        "as_of": _iso(max(r["as_of"] for r in rows)) if rows else None,
        "bands": bands_legend(),
        "overall": {"score": overall, "band": band(overall)},
        "entities": entities,
        "trend": trend(history or []),
        "alerts": [_alert(c) for c in conditions or [] if c.firing],
        "alert_delivery": alert_delivery(delivery),
        "data_docs_index": docs.index,
    }


def _batches(suite: Any, rows: list[dict]) -> list[str]:
    """The batches of an entity's audit, in its suite's order."""
    audited = {r["table_name"] for r in rows}
    order = [b.name for b in suite.batches] if suite else []
    return [b for b in order if b in audited] + sorted(audited - set(order))


def _publication(pub: dict | None, audit_run_id: str) -> dict:
    if not pub:
        return {"status": "none", "serving_run_id": None, "published_at": None, "reason": None}
    status = pub["status"]
    # Held without an audit (a model it is built from failed): the decision is newer than the
    # audit scored, and it stands. Decided on an earlier audit than the one scored: this
    # audit's decision is still to come.
    if pub["audit_run_id"] != audit_run_id and not (status == "held" and pub["unaudited"]):
        status = "pending"
    return {
        "status": status,
        "serving_run_id": pub["serving_run_id"],
        "published_at": _iso(pub["published_at"]) if pub["published_at"] else None,
        "reason": pub["reason"] if status == "held" else None,
        "decided_in_run": pub["decided_in_run"],
    }


def trend(history: list[dict]) -> list[dict]:
    """Overall score per entity per past run, oldest first."""
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in history:
        runs[(r["run_id"], r["entity"])].append(r)
    points = [
        {
            "run_id": run_id,
            "entity": entity,
            "validated_at": _iso(max(r["validated_at"] for r in rs)),
            "score": entity_score(rs)[0],
        }
        for (run_id, entity), rs in runs.items()
    ]
    return sorted(points, key=lambda p: (p["validated_at"], p["entity"]))


def _conditions(con: Any, rows: list[dict], since: dict[tuple[str, str], datetime]) -> list[Condition]:
    conditions: list[Condition] = []
    for entity, suite in SUITES.items():
        mine = [r for r in rows if r["entity"] == entity]
        conditions += audit_conditions(suite, mine, {c: at for (e, c), at in since.items() if e == entity})
    conditions += [volume_condition(reading) for reading in latest_volumes(con)]
    conditions += [drift_condition(drift) for drift in current_drifts(con)]
    return conditions


def _failing(row: dict, suite: Any, since: datetime | None, data_docs_url: str | None = None) -> dict:
    check = None
    if suite is not None and row["check_name"]:
        try:
            check = suite.check(row["check_name"])
        except KeyError:
            check = None
    return {
        "check": row["check_name"],
        "table": row["table_name"],
        "expectation": row["expectation"],
        "column": row["column_name"],
        "dimension": row["dimension"],
        "severity": row["severity"],
        "description": row["description"],
        "owner": row["owner"],
        "unexpected_count": row["unexpected_count"],
        "element_count": row["element_count"],
        "rows_checked": row.get("rows_checked") or ALL_ROWS,
        "score": _rounded(check_score(row)),
        "sample": json.loads(row["sample_unexpected"] or "[]"),
        "observed_value": json.loads(row["observed_value"]) if row["observed_value"] else None,
        "error": row["error"],
        "failing_since": _iso(since) if since else None,
        "likely_causes": list(check.likely_causes) if check else [],
        "suggested_action": check.suggested_action if check else None,
        "data_docs_url": data_docs_url,
    }


def _alert(c: Condition) -> dict:
    return {
        "key": c.key,
        "kind": c.kind,
        "state": c.state,
        "dataset": c.dataset,
        "what": c.what,
        "how_many": c.how_many,
        "since": c.since,
        "likely_causes": list(c.causes),
        "owner": c.owner,
        "suggested_action": c.action,
    }


def _query(con: Any, sql: str, missing: str | None = None) -> list[dict]:
    try:
        cursor = con.execute(sql)
    except MISSING_TABLE as exc:
        if missing:
            raise LookupError(missing) from exc
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values)) for values in cursor.fetchall()]


def _iso(value: Any) -> str | None:
    """Instants as UTC ISO 8601 with a Z, as alerts give them (DuckDB's TIMESTAMPs are UTC)."""
    if value is None:
        return None
    return utc_iso(value) if isinstance(value, datetime) else str(value)


def _rounded(score: float) -> float:
    # Scores are stored at the precision shown and banded after rounding, so a displayed 95.0
    # is never yellow.
    return round(score, 1)


# --- rendering ------------------------------------------------------------------------------


def trend_svg(scorecard: dict) -> str:
    """The score of every entity over past runs as an inline SVG line chart, bands shaded."""
    # matplotlib takes about a second to import and only the HTML scorecard draws.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    points = scorecard["trend"]
    ended: dict[str, str] = {}
    for p in points:  # a run's time is when its last audit ended
        ended[p["run_id"]] = max(ended.get(p["run_id"], ""), p["validated_at"])
    runs = sorted((at, run_id) for run_id, at in ended.items())
    index = {run_id: i for i, (_, run_id) in enumerate(runs)}
    low = min([p["score"] for p in points] + [85.0])
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=96)
    ax.axhspan(95, 100.5, color="#d3f9d8", zorder=0)
    ax.axhspan(90, 95, color="#fff3bf", zorder=0)
    ax.axhspan(low - 2, 90, color="#ffd8d8", zorder=0)
    for entity in scorecard["entities"]:
        mine = sorted((index[p["run_id"]], p["score"]) for p in points if p["entity"] == entity)
        if mine:
            ax.plot([x for x, _ in mine], [y for _, y in mine], marker="o", markersize=3, linewidth=1.5, label=entity)
    ax.set_ylim(low - 2, 100.5)
    ax.set_xlim(-0.5, max(len(runs) - 0.5, 0.5))
    labels = [datetime.fromisoformat(at).strftime("%m-%d %H:%M") for at, _ in runs]
    step = max(1, len(labels) // 8)
    ax.set_xticks(range(0, len(labels), step), labels[::step], fontsize=8)
    ax.set_ylabel("score")
    ax.set_title(f"Overall score per entity, last {len(runs)} run(s)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:  # no entity scored yet: nothing to name
        ax.legend(loc="lower left", fontsize=8, ncol=3, frameon=False)
    ax.grid(axis="y", color="#ffffff", linewidth=0.8)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _environment(markdown: bool = False) -> Any:
    """The templates' Jinja environment. HTML is autoescaped. Markdown has no autoescape in Jinja,
    so every printed value goes through `markdown_text` (the `finalize` hook), except what the
    template marks as Markdown of its own (`verbatim`) or as a code span (`code`)."""

    if markdown:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=lambda v: v if isinstance(v, markupsafe.Markup) else markdown_text("" if v is None else v),
        )
        env.filters["verbatim"] = markupsafe.Markup
        # Inside backticks nothing is interpreted; only a backtick or a line break could end it.
        env.filters["code"] = lambda v: markupsafe.Markup(CONTROL.sub(" ", str(v)).replace("`", "'"))
    else:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True
        )
    env.filters["human"] = lambda v: datetime.fromisoformat(v.rstrip("Z")).strftime("%Y-%m-%d %H:%M UTC") if v else ""
    env.filters["record"] = lambda v: (
        ", ".join(f"{k}={_short(x)}" for k, x in v.items()) if isinstance(v, dict) else _short(v)
    )
    return env


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "null" if value is None else str(value)


def render_html(scorecard: dict) -> str:
    return (
        _environment()
        .get_template("scorecard.html.j2")
        .render(sc=scorecard, dimensions=DIMENSIONS, chart=markupsafe.Markup(trend_svg(scorecard)))
    )


def render_markdown(scorecard: dict) -> str:
    env = _environment(markdown=True)
    return env.get_template("scorecard.md.j2").render(sc=scorecard, dimensions=DIMENSIONS, shown=FAILING_SHOWN)


def format_summary(scorecard: dict) -> str:
    """A plain-text table for the terminal: entities x dimensions, plus overall."""
    headers = ["entity", *DIMENSIONS, "overall", "serving"]
    lines = [[*headers]]
    for entity, card in scorecard["entities"].items():
        cells = [_cell(card["dimensions"].get(d)) for d in DIMENSIONS]
        lines.append([entity, *cells, _cell(card["overall"]), card["publication"]["status"]])
    lines.append(["all", *([""] * len(DIMENSIONS)), _cell(scorecard["overall"]), ""])
    widths = [max(len(row[i]) for row in lines) for i in range(len(headers))]
    table = [
        "  ".join(
            cell.ljust(w) if i in (0, len(headers) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in lines
    ]
    failing = [
        f"{entity}: {card['checks']['failed']} failing ({card['checks']['blocking_failed']} blocking)"
        for entity, card in scorecard["entities"].items()
    ]
    held = [
        f"{entity} held back: {card['publication']['reason'] or 'a blocking check failed'}"
        for entity, card in scorecard["entities"].items()
        if card["publication"]["status"] == "held"
    ]
    return "\n".join(
        [
            f"Data quality scorecard - as of {scorecard['as_of']}",
            *table,
            "; ".join(failing),
            *held,
            f"alerts: {len(scorecard['alerts'])} firing{_owed(scorecard)}; bands: G >= 95, Y 90-95, R < 90; "
            "'-' = no checks",
        ]
    )


def _owed(scorecard: dict) -> str:
    owed = [c for c in scorecard.get("alert_delivery", {}).get("channels", []) if c["owed"]]
    return "".join(f", {c['owed']} owed to {c['channel']}" for c in owed)


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['score']:.1f} {entry['band'][0].upper()}"
