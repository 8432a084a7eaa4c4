"""The variant matrix: the same company as real accounts send it builds, audits and publishes.

Each shape of tests/pipeline_runs.py runs the whole pipeline (`spine run`) on the `tiny`
company: between them, every Stripe API version, generated product ids, custom fields absent,
every event format, no trials and no coupons. What each variant changes is checked where it
shows.
"""

from __future__ import annotations

import pytest
from pipeline_runs import SHAPES

ENTITIES = {"customer", "contact", "revenue", "invoice", "ticket", "usage_event"}


@pytest.mark.parametrize("shape", [s.name for s in SHAPES])
def test_every_shape_builds_with_error_0_and_publishes_every_entity(shape_runs, shape):
    run = shape_runs[shape]
    assert run.returncode == 0, run.output[-5000:]
    assert " ERROR=0 " in run.dbt_summary, run.dbt_summary
    decided = dict(run.rows("select entity, arg_max(status, decided_at) from quality.publications group by entity"))
    assert decided == dict.fromkeys(ENTITIES, "published")
    assert (run.root / "data" / "reports" / "scorecard.json").exists()
    assert run.value("select count(*) from serving.customers where mrr > 0") > 0


def test_generated_product_ids_map_to_plan_tiers_through_product_metadata(shape_runs):
    run = shape_runs["legacy"]
    products = [
        r[0]
        for r in run.rows("select product_id from staging.stg_stripe__products where product_id not like 'prod_Doc%'")
    ]
    assert products and not any(tier in p for p in products for tier in ("starter", "growth", "enterprise"))
    rules = dict(
        run.rows(
            "select plan_tier_rule, count(*) from intermediate.int_stripe__price_plan_tiers"
            " where price_id not like 'price_Doc%' group by all"
        )
    )
    assert set(rules) == {"product_metadata"}
    # The sample company names its prices' lookup keys after what they sell: the truth here.
    wrong = run.rows(
        "select price_id, plan_tier, lookup_key from intermediate.int_stripe__price_plan_tiers"
        " where price_id not like 'price_Doc%' and plan_tier <> split_part(lookup_key, '_', 1)"
    )
    assert not wrong
    tiers = {
        r[0]
        for r in run.rows(
            "select distinct c.plan_tier from serving.customers c join serving.customer_crosswalk x"
            " using (customer_id) where x.source_system = 'stripe' and x.source_id not like 'cus_Doc%'"
            " and c.plan_tier is not null"
        )
    }
    assert tiers and tiers <= {"starter", "growth", "enterprise"}


def test_without_custom_fields_prices_are_unmapped_and_identity_links_by_domain(shape_runs):
    run = shape_runs["current"]
    # No product metadata and an empty plan_tiers seed: every generated price is unmapped, and
    # the customer suite flags it without holding anything back.
    tiers = dict(
        run.rows(
            "select plan_tier, count(*) from intermediate.int_stripe__price_plan_tiers"
            " where price_id not like 'price_Doc%' group by all"
        )
    )
    assert set(tiers) == {"unmapped"}
    assert (
        run.value(
            "select count(*) from staging.stg_hubspot__companies"
            " where stripe_customer_id is not null and company_id not like '9%'"
        )
        == 0
    )
    rules = dict(
        run.rows(
            "select source_system || ':' || match_rule, count(*) from serving.customer_crosswalk"
            " where source_id not ilike '%doc%' and source_id not like '3770%' group by all"
        )
    )
    assert rules.get("stripe:email_domain", 0) >= 0.9 * 60
    assert rules.get("zendesk:domain", 0) == 60
    assert not any(
        rule.endswith(("crm_stripe_property", "stripe_metadata", "zendesk_external_id", "crm_workspace_property"))
        for rule in rules
    )


def test_no_trials_and_no_coupons(shape_runs):
    run = shape_runs["current"]
    assert (
        run.value(
            "select count(trial_started_at) from staging.stg_stripe__subscriptions"
            " where subscription_id not like 'sub_Doc%'"
        )
        == 0
    )
    assert run.value("select count(*) from staging.stg_stripe__coupons where coupon_id not like 'DOC%'") == 0
    assert run.value("select count(*) from staging.stg_stripe__subscriptions where status = 'incomplete_expired'") > 0
    assert (
        run.value(
            "select sum(discount_mrr) from serving.mrr_by_customer_month m join serving.customer_crosswalk c"
            " using (customer_id) where c.source_system = 'stripe' and c.source_id not like 'cus_Doc%'"
        )
        == 0
    )


@pytest.mark.parametrize(("shape", "link"), [("legacy", "charge"), ("current", "invoice_payment_intent")])
def test_every_charge_finds_its_invoice_in_each_api_version(shape_runs, shape, link):
    run = shape_runs[shape]
    links = dict(
        run.rows(
            "select invoice_link, count(*) from intermediate.int_stripe__charges"
            " where charge_id not like 'ch_Doc%' group by all"
        )
    )
    assert set(links) == {link}


@pytest.mark.parametrize("shape", [s.name for s in SHAPES])
def test_usage_events_in_every_format_reach_their_customer(shape_runs, shape):
    run = shape_runs[shape]
    formats = {r[0] for r in run.rows("select distinct format from raw_usage_events.events")}
    expected = {"legacy": "segment", "current": "snowplow"}[shape]
    assert formats == {expected}
    [(events, with_customer)] = run.rows(
        "select count(*), count(customer_id) from serving.usage_events where event_type in ('track', 'page', 'screen')"
    )
    assert events > 4000
    if shape != "current":  # without the CRM's workspace property, nothing links a workspace to a company
        assert with_customer == events
