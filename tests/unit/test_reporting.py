"""The revenue report on a small hand-made `serving` schema: the waterfall's geometry, masking,
the JSON layout, and the one line it fails with when nothing was published."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import dagster as dg
import duckdb
import jsonschema
import pytest

from reporting.revenue_report import SCHEMA, build_revenue_report, waterfall

AS_OF = date(2026, 3, 10)

SERVING = """
create schema serving;
create table serving.mrr_bridge as select * from (values
    (date '2026-01-01', 0.00, 150.00, 0.00, 0.00, 0.00, 0.00, 150.00, 1800.00, 2, 0),
    (date '2026-02-01', 150.00, 0.00, 30.00, 0.00, 0.00, 50.00, 130.00, 1560.00, 1, 1),
    (date '2026-03-01', 130.00, 20.00, 0.00, 0.00, 10.00, 0.00, 140.00, 1680.00, 2, 0)
) t(month, opening_mrr, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, churned_mrr, closing_mrr,
    closing_arr, closing_customers, churned_customers);
create table serving.revenue_retention as select * from (values
    (date '2026-01-01', null::double, null::double, 0, 0, null::double),
    (date '2026-02-01', null, null, 1, 2, 0.5),
    (date '2026-03-01', null, null, 0, 1, 0.0)
) t(month, net_revenue_retention, gross_revenue_retention, churned_customers, opening_customers, logo_churn_rate);
create table serving.customers as select * from (values
    ('hubspot:1', 'Acme', 'growth', 120.0::double, 35, 'high', 'active', 'Jane Doe', 'jane.doe@acme.example'),
    ('hubspot:2', 'Globex', 'starter', 20.0, 65, 'medium', 'active', 'John Roe', 'john@globex.example'),
    ('hubspot:3', 'Initech', 'starter', 0.0, null, null, 'churned', 'Ann Poe', 'ann@initech.example'),
    ('hubspot:4', 'Umbrella', 'enterprise', 0.0, 100, 'low', 'trial', null, null)
) t(customer_id, company_name, plan_tier, mrr, health_score, churn_risk, status, primary_contact_name,
    primary_contact_email);
create table serving.feature_adoption_daily as select * from (values
    (date '2026-03-08', 'app.viewed.dashboard', 'app', 0.5::double, 1, 2),
    (date '2026-03-09', 'app.viewed.dashboard', 'app', 1.0, 2, 2),
    (date '2026-03-09', 'report.created.report', 'report', 0.5, 1, 2)
) t(activity_date, feature, feature_area, adoption_rate, customers_using, eligible_customers);
"""


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(SERVING)
    return path


def test_the_report_reads_the_as_of_month_and_keeps_to_its_schema(warehouse, tmp_path):
    report = build_revenue_report(warehouse, tmp_path / "reports", AS_OF)
    written = json.loads((tmp_path / "reports" / "revenue.json").read_text())
    jsonschema.validate(written, json.loads(SCHEMA.read_text()))
    assert written["month"] == "2026-03-01"
    assert report["headline"]["mrr"]["value"] == 140.0 and report["headline"]["nrr"]["value"] is None
    steps = {s["name"]: s["value"] for s in report["bridge"]["steps"]}
    assert steps["contraction_mrr"] == -10.0 and steps["new_mrr"] == 20.0
    assert [s["status"] for s in report["customers"]["by_status"]] == ["active", "trial", "churned"]
    assert report["customers"]["health_scores"]["bins"][-1] == {"low": 90, "high": 100, "customers": 1}
    assert report["feature_adoption"]["day"] == "2026-03-09"
    html = (tmp_path / "reports" / "revenue.html").read_text()
    assert 'id="nrr" data-value="">n/a<' in html


def test_the_customers_at_risk_come_high_first_and_masked(warehouse, tmp_path):
    report = build_revenue_report(warehouse, tmp_path, AS_OF)
    shown = report["at_risk"]["customers"]
    assert [c["company_name"] for c in shown] == ["Acme", "Globex"]
    assert [(c["primary_contact_name"], c["primary_contact_email"]) for c in shown] == [
        ("J***", "j***@acme.example"),
        ("J***", "j***@globex.example"),
    ]
    for written in (tmp_path / "revenue.json", tmp_path / "revenue.html"):
        text = written.read_text()
        assert "jane.doe@" not in text and "Jane Doe" not in text and "john@" not in text


def test_the_waterfall_steps_from_level_to_level():
    steps = [
        {"name": "opening_mrr", "label": "opening MRR", "kind": "total", "value": 1000.0},
        {"name": "new_mrr", "label": "new", "kind": "movement", "value": 60.0},
        {"name": "contraction_mrr", "label": "contraction", "kind": "movement", "value": -25.0},
        {"name": "churned_mrr", "label": "churn", "kind": "movement", "value": 0.0},
        {"name": "closing_mrr", "label": "closing MRR", "kind": "total", "value": 1035.0},
    ]
    chart = waterfall(steps)
    opening, new, contraction, churn, closing = chart.bars
    assert [b.kind for b in chart.bars] == ["total", "up", "down", "up", "total"]
    assert sum(Decimal(str(b.value)) for b in chart.bars[1:-1]) == Decimal("35")
    # Each movement starts where the step before ended; the closing bar reaches the last level.
    assert new.y + new.height == pytest.approx(opening.y)
    assert contraction.y == pytest.approx(new.y)
    assert churn.height == 0 and churn.y == pytest.approx(contraction.y + contraction.height)
    assert closing.y == pytest.approx(churn.y)
    # Movements of a few percent stay visible: the axis starts above zero, below the lowest level.
    assert 0 < chart.floor < 1000 and new.height > 10
    assert contraction.shown == "\u2212$25.00" and closing.shown == "$1,035.00"


def test_a_first_month_waterfall_starts_at_zero():
    steps = [
        {"name": "opening_mrr", "label": "opening MRR", "kind": "total", "value": 0.0},
        {"name": "new_mrr", "label": "new", "kind": "movement", "value": 150.0},
        {"name": "closing_mrr", "label": "closing MRR", "kind": "total", "value": 150.0},
    ]
    assert waterfall(steps).floor == 0


def test_revenue_never_published_fails_the_asset_in_one_line(tmp_path):
    from orchestration.reporting_assets import revenue_report
    from orchestration.resources import WarehouseResource

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(SERVING.replace("create table serving.mrr_bridge", "create table serving.not_mrr_bridge"))
    warehouse = WarehouseResource(path=str(path), reports_dir=str(tmp_path), as_of=AS_OF.isoformat())
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [revenue_report], resources={"warehouse": warehouse}, instance=instance, raise_on_error=False
        )
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    assert error.cause is None and error.context is None
    assert failure.step_failure_data.user_failure_data.description == (
        "revenue report: serving.mrr_bridge missing, the revenue entity has never been published; "
        "the report is written once a run publishes them"
    )
    assert not (tmp_path / "revenue.html").exists()


def test_customers_never_published_leave_their_sections_saying_so(tmp_path):
    """A first run that held the customer entity still reports the revenue it served."""

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(SERVING.replace("create table serving.customers", "create table serving.not_customers"))
    report = build_revenue_report(path, tmp_path, AS_OF)
    assert report["not_served"] == ["customers"] and report["customers"] is None and report["at_risk"] is None
    assert report["headline"]["mrr"]["value"] is not None and report["feature_adoption"] is not None
    jsonschema.validate(json.loads((tmp_path / "revenue.json").read_text()), json.loads(SCHEMA.read_text()))
    page = (tmp_path / "revenue.html").read_text()
    assert page.count("Not published yet: <code>serving.customers</code>") == 2 and 'id="mrr"' in page


def test_the_report_follows_the_audits_so_a_held_entity_cannot_stop_it():
    """A held entity fails its publishing step, and a step downstream of it would not start."""
    from orchestration.definitions import defs
    from reporting.revenue_report import ENTITIES

    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("revenue_report"))
    assert node.parent_keys == {dg.AssetKey(["audit", e]) for e in ENTITIES}
    job = defs.resolve_job_def("spine_job")
    priority = {n.name: int(n.tags.get("dagster/priority", 0)) for n in job.graph.node_defs}
    # Ready together with the publishing steps, it goes after them.
    assert priority["revenue_report"] < min(priority[f"publish_{e}"] for e in ENTITIES)
