"""The numbers where people look: each serving asset's materialization in Dagster carries the
figures a person checks, equal to the marts, and a preview of its rows with personal data masked."""

from __future__ import annotations

import re

import dagster as dg
import duckdb
import pytest

from data_spine.settings import settings
from orchestration.run_recovery import persistent_instance


@pytest.fixture(scope="module")
def served(first_run) -> dict[str, dict]:
    """Per serving table, the metadata of its materialization in the first run, as Dagster's API gives it."""
    logged = persistent_instance().all_logs(first_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    found = {
        entry.asset_materialization.asset_key.path[1]: entry.asset_materialization.metadata
        for entry in logged
        if entry.asset_materialization.asset_key.path[0] == "serving"
    }
    assert {"customers", "mrr_bridge", "revenue_retention", "ticket_metrics", "usage_events", "contacts"} <= set(found)
    return found


def _value(entry: dg.MetadataValue):
    return entry.value


def test_revenue_figures_are_numbers_equal_to_the_marts(served):
    shown = served["mrr_bridge"]
    assert isinstance(shown["mrr"], dg.FloatMetadataValue) and isinstance(
        shown["paying_customers"], dg.IntMetadataValue
    )
    month = shown["as_of"].value[:7] + "-01"
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        mrr, arr, customers = con.execute(
            "select closing_mrr, closing_arr, closing_customers from marts.mrr_bridge where month = ?", [month]
        ).fetchall()[0]
        nrr, grr = con.execute(
            "select net_revenue_retention, gross_revenue_retention from marts.revenue_retention where month = ?",
            [month],
        ).fetchall()[0]
    assert _value(shown["mrr"]) == pytest.approx(float(mrr), abs=0.005)
    assert _value(shown["arr"]) == pytest.approx(float(arr), abs=0.005)
    assert _value(shown["paying_customers"]) == customers
    assert _value(shown["nrr"]) == pytest.approx(nrr) and _value(shown["grr"]) == pytest.approx(grr)
    # Every table of the entity carries them: the UI plots them whichever asset is open.
    assert _value(served["revenue_retention"]["mrr"]) == _value(shown["mrr"])


def test_support_usage_and_customer_figures_equal_the_marts(served):
    as_of = served["usage_events"]["as_of"].value
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        (open_tickets,) = con.execute("select count(*) from marts.ticket_metrics where is_open").fetchall()[0]
        events, active = con.execute(
            "select count(*), count(distinct customer_id) filter (is_product_event and occurred_at >= ?::date - "
            "interval 30 day and occurred_at < ?::date) from marts.usage_events",
            [as_of, as_of],
        ).fetchall()[0]
        (customers,) = con.execute("select count(*) from marts.customers where status = 'active'").fetchall()[0]
    assert _value(served["ticket_metrics"]["open_tickets"]) == open_tickets > 0
    assert (_value(served["usage_events"]["events"]), _value(served["usage_events"]["active_accounts_30d"])) == (
        events,
        active,
    )
    assert active > 0
    assert _value(served["customers"]["active_customers"]) == customers > 0


def test_previews_show_rows_with_personal_data_masked(served):
    for table in ("customers", "contacts"):
        preview = served[table]["preview"]
        assert isinstance(preview, dg.MarkdownMetadataValue)
        rows = [line for line in preview.value.splitlines() if line.startswith("| ")][1:]
        assert len(rows) == 5, preview.value
        emails = re.findall(r"[\w.*+-]+@[\w.-]+", preview.value)
        assert emails and all(email.split("@")[0].endswith("***") for email in emails), emails
    header, _, *rows = served["contacts"]["preview"].value.splitlines()
    name = [cell.strip() for cell in header.split("|")].index("full_name")
    names = [[cell.strip() for cell in row.split("|")][name] for row in rows]
    assert names and all(n.endswith("***") and len(n) <= 4 for n in names if n), names


def test_freshness_and_timeliness_say_how_they_differ_on_both_screens(first_run):
    """The Dagster UI's freshness (last load or build) and the scorecard's timeliness (the
    data's age) judge one window differently: each screen says so."""
    from orchestration.definitions import defs

    mart = defs.resolve_asset_graph().get(dg.AssetKey(["marts", "usage_events"]))
    assert mart.freshness_policy is not None
    assert "timeliness check" in mart.description and "last built" in mart.description
    scorecard = (settings().reports_dir / "scorecard.html").read_text()
    assert "Timeliness judges the data itself" in scorecard and "freshness judges" in scorecard
