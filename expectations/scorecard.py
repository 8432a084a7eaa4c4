"""Turn one validation run into a per-entity, per-dimension quality scorecard.

Scores (see README.md): a check scores ``100 * (1 - unexpected / evaluated)``; a dimension
is the mean of its checks; an entity's overall score is the mean of its dimensions; the
scorecard's overall score is the mean of the entities'. Bands follow the governance
reference: green >= 95 (healthy), yellow 90-95 (warning), red < 90 (critical).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean
from typing import Any

import duckdb

from expectations.runner import RESULTS_TABLE
from expectations.suites import DIMENSIONS, SUITES

# (band, inclusive lower bound, label), best first.
BANDS = (("green", 95.0, "Healthy"), ("yellow", 90.0, "Warning"), ("red", 0.0, "Critical"))
TEMPLATE = Path(__file__).with_name("templates") / "scorecard.html.j2"


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


def build_scorecard(warehouse_path: Path, reports_dir: Path, run_id: str | None = None) -> dict:
    """Score ``run_id`` (default: the latest run) and write scorecard.json and scorecard.html
    into ``reports_dir``. Returns the scorecard dict (layout in README.md)."""
    rows, run_id = load_results(warehouse_path, run_id)
    scorecard = score_results(rows, run_id)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "scorecard.json").write_text(json.dumps(scorecard, indent=2) + "\n")
    (reports_dir / "scorecard.html").write_text(render_html(scorecard))
    return scorecard


def load_results(warehouse_path: Path, run_id: str | None = None) -> tuple[list[dict], str]:
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        try:
            if run_id is None:
                latest = con.execute(
                    f"SELECT run_id FROM {RESULTS_TABLE} ORDER BY validated_at DESC LIMIT 1"
                ).fetchone()
                if latest is None:
                    raise LookupError(f"{RESULTS_TABLE} in {warehouse_path} is empty")
                run_id = latest[0]
            cursor = con.execute(f"SELECT * FROM {RESULTS_TABLE} WHERE run_id = ?", [run_id])
        except duckdb.CatalogException as exc:
            raise LookupError(f"no validation results in {warehouse_path}: {exc}") from exc
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    if not rows:
        raise LookupError(f"no validation results for run {run_id!r} in {warehouse_path}")
    return rows, run_id


def check_score(row: dict) -> float:
    if row["element_count"] == 0:
        return 100.0 if row["success"] else 0.0
    return 100.0 * (1 - row["unexpected_count"] / row["element_count"])


def score_results(rows: list[dict], run_id: str) -> dict:
    """The scorecard for the result rows of one run (pure: no I/O)."""
    known = list(SUITES)
    entity_names = sorted(
        {r["entity"] for r in rows},
        key=lambda e: (known.index(e) if e in known else len(known), e),
    )
    entities = {e: _score_entity([r for r in rows if r["entity"] == e]) for e in entity_names}
    overall = _rounded(fmean(e["overall"]["score"] for e in entities.values()))
    as_of = max(r["as_of"] for r in rows)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "as_of": as_of.isoformat() if hasattr(as_of, "isoformat") else str(as_of),
        "bands": bands_legend(),
        "entities": entities,
        "overall": {"score": overall, "band": band(overall)},
    }


def _score_entity(rows: list[dict]) -> dict:
    dimensions = {}
    for dim in DIMENSIONS:
        checks = [r for r in rows if r["dimension"] == dim]
        if not checks:
            continue
        score = _rounded(fmean(check_score(r) for r in checks))
        dimensions[dim] = {
            "score": score,
            "band": band(score),
            "checks": len(checks),
            "failed": sum(not r["success"] for r in checks),
        }
    overall = _rounded(fmean(d["score"] for d in dimensions.values()))
    failing = sorted(
        (r for r in rows if not r["success"]),
        key=lambda r: (r["severity"] != "blocking", check_score(r)),
    )
    return {
        "overall": {"score": overall, "band": band(overall)},
        "dimensions": dimensions,
        "failing_checks": [_failing(r) for r in failing],
    }


def _failing(row: dict) -> dict:
    return {
        "expectation": row["expectation"],
        "column": row["column_name"],
        "dimension": row["dimension"],
        "severity": row["severity"],
        "description": row["description"],
        "owner": row["owner"],
        "unexpected_count": row["unexpected_count"],
        "element_count": row["element_count"],
        "sample": json.loads(row["sample_unexpected"] or "[]"),
        "observed_value": json.loads(row["observed_value"]) if row["observed_value"] else None,
        "error": row["error"],
    }


def _rounded(score: float) -> float:
    # Scores are stored at the precision shown and banded after rounding, so a displayed 95.0
    # is never yellow.
    return round(score, 1)


def render_html(scorecard: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE.name).render(sc=scorecard, dimensions=DIMENSIONS)


def format_summary(scorecard: dict) -> str:
    """A plain-text table for the terminal: entities x dimensions, plus overall."""
    headers = ["entity", *DIMENSIONS, "overall"]
    lines = [[*headers]]
    for entity, card in scorecard["entities"].items():
        cells = [_cell(card["dimensions"].get(d)) for d in DIMENSIONS]
        lines.append([entity, *cells, _cell(card["overall"])])
    lines.append(["all", *([""] * len(DIMENSIONS)), _cell(scorecard["overall"])])
    widths = [max(len(row[i]) for row in lines) for i in range(len(headers))]
    table = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                  enumerate(zip(row, widths))).rstrip()
        for row in lines
    ]
    failing = [
        f"{entity}: {len(card['failing_checks'])} failing "
        f"({sum(c['severity'] == 'blocking' for c in card['failing_checks'])} blocking)"
        for entity, card in scorecard["entities"].items()
    ]
    return "\n".join([
        f"Data quality scorecard - run {scorecard['run_id']}, as of {scorecard['as_of']}",
        *table,
        "; ".join(failing),
        "bands: G >= 95, Y 90-95, R < 90; '-' = no checks",
    ])


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['score']:.1f} {entry['band'][0].upper()}"
