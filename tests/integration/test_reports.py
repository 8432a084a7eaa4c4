"""The revenue and customer report after a whole run of the `small` company, rendered in a real
headless browser: the figures it shows are the served ones, its waterfall adds up, its contacts
are masked, every definition it links is a page of the dbt docs site, and its JSON keeps to its
schema."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import duckdb
import pytest
from browser_pages import rendered

from data_spine.settings import settings

# What the rendered page shows, read back from its DOM.
PROBE = """(() => {
  const figure = id => {
    const e = document.getElementById(id);
    return e ? {text: e.innerText.trim(), value: e.getAttribute('data-value')} : null;
  };
  return JSON.stringify({
    figures: Object.fromEntries(['mrr', 'arr', 'nrr', 'grr', 'paying_customers', 'logo_churn_rate']
      .map(id => [id, figure(id)])),
    bars: [...document.querySelectorAll('svg.waterfall rect[data-value]')].map(r => ({
      name: r.getAttribute('data-name'), kind: r.getAttribute('class'), value: r.getAttribute('data-value'),
      height: r.getBoundingClientRect().height})),
    at_risk: [...document.querySelectorAll('#at-risk-table tbody tr')]
      .map(tr => [...tr.cells].map(c => c.innerText.trim())),
    charts: [...document.querySelectorAll('.chart svg')].map(s => s.getBoundingClientRect().width),
    definitions: [...document.querySelectorAll('a[href^="dbt_docs/"]')].map(a => a.getAttribute('href')),
    fetched: [...document.querySelectorAll('[src], link[href]')]
      .map(e => e.getAttribute('src') || e.getAttribute('href')),
  });
})()"""
EMAIL = re.compile(r"[^\s<>]+@[^\s<>]+")


@pytest.fixture(scope="module")
def page(first_run, tmp_path_factory) -> dict:
    html = settings().reports_dir / "revenue.html"
    assert html.exists()
    shot = tmp_path_factory.mktemp("revenue") / "revenue.png"
    shown = rendered(html, shot, PROBE)
    assert shown["screenshot"]["width"] == 1280 and shown["text_width"] > 0
    return {"title": shown["title"], **shown["probe"]}


@pytest.fixture(scope="module")
def served(first_run) -> dict:
    """The as-of month's row of the served bridge and retention, queried directly."""
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        cursor = con.execute(
            """
            select b.month, b.opening_mrr, b.closing_mrr, b.closing_arr, r.net_revenue_retention
            from serving.mrr_bridge b join serving.revenue_retention r using (month)
            where b.month = date_trunc('month', ?::date)
            """,
            [settings().as_of],
        )
        names = [d[0] for d in cursor.description]
        [row] = cursor.fetchall()
        emails = {e for (e,) in con.execute("select primary_contact_email from serving.customers").fetchall() if e}
    return {**dict(zip(names, row, strict=True)), "emails": emails}


def test_the_headline_shows_the_served_mrr_arr_and_nrr(page, served):
    shown = page["figures"]
    assert page["title"] == f"Revenue and customers - {served['month']:%B %Y}"
    assert Decimal(shown["mrr"]["value"]) == served["closing_mrr"]
    assert shown["mrr"]["text"] == f"${served['closing_mrr']:,.2f}"
    assert Decimal(shown["arr"]["value"]) == served["closing_arr"] == 12 * served["closing_mrr"]
    assert shown["arr"]["text"] == f"${served['closing_arr']:,.2f}"
    assert served["net_revenue_retention"] is not None, "the small company has more than twelve months"
    assert float(shown["nrr"]["value"]) == served["net_revenue_retention"]
    assert shown["nrr"]["text"] == f"{served['net_revenue_retention']:.1%}"
    assert all(shown[name] and shown[name]["text"] != "n/a" for name in ("grr", "paying_customers", "logo_churn_rate"))


def test_the_waterfall_moves_mrr_from_opening_to_closing(page, served):
    bars = page["bars"]
    assert [b["name"] for b in bars] == [
        "opening_mrr",
        "new_mrr",
        "expansion_mrr",
        "reactivation_mrr",
        "contraction_mrr",
        "churned_mrr",
        "closing_mrr",
    ]
    totals = [Decimal(b["value"]) for b in bars if b["kind"] == "total"]
    movements = {b["name"]: Decimal(b["value"]) for b in bars if b["kind"].startswith("movement")}
    assert totals == [served["opening_mrr"], served["closing_mrr"]]
    assert sum(movements.values()) == served["closing_mrr"] - served["opening_mrr"]
    assert movements["contraction_mrr"] <= 0 and movements["churned_mrr"] <= 0 and movements["new_mrr"] >= 0
    assert all(b["height"] > 0 for b in bars if Decimal(b["value"]) != 0)


def test_the_customers_at_risk_show_no_personal_data_unmasked(page, served):
    rows = page["at_risk"]
    assert 0 < len(rows) <= 10
    risks = [row[4] for row in rows]
    assert set(risks) <= {"high", "medium"} and risks == sorted(risks, key=lambda r: r != "high")
    contacts = [email for row in rows for email in EMAIL.findall(row[5])]
    assert contacts and all(re.fullmatch(r"\w\*\*\*@[^@]+", e) for e in contacts), contacts
    reports = settings().reports_dir
    for written in (reports / "revenue.html", reports / "revenue.json"):
        text = written.read_text()
        assert [e for e in served["emails"] if e in text] == []


def test_every_chart_is_drawn_inline_and_every_definition_is_a_page_of_the_docs_site(page):
    assert len(page["charts"]) == 4 and min(page["charts"]) > 300
    assert page["fetched"] == []
    docs = (settings().reports_dir / "dbt_docs" / "index.html").read_text()
    models = {link.rpartition("#!/model/")[2] for link in page["definitions"] if "#!/model/" in link}
    assert {"model.data_spine.mrr_by_customer_month", "model.data_spine.revenue_retention"} <= models
    assert [m for m in models if f'"{m}"' not in docs] == []


def test_revenue_json_keeps_to_its_schema_and_agrees_with_the_page(first_run, page):
    import dagster as dg
    import jsonschema

    from reporting.revenue_report import SCHEMA

    report = json.loads((settings().reports_dir / "revenue.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    for name in ("mrr", "arr", "nrr"):
        assert report["headline"][name]["value"] == float(page["figures"][name]["value"]), name
    [event] = [e for e in first_run.get_asset_materialization_events() if e.asset_key == dg.AssetKey("revenue_report")]
    metadata = event.materialization.metadata
    assert metadata["as_of_month"].value == report["month"]
    assert metadata["mrr"].value == report["headline"]["mrr"]["value"]
