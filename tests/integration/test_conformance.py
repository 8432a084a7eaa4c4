"""Conformance with the vendors' documentation, not with our generator.

For every resource, a sparse record (only what the vendor always sends, every optional field
null or absent) and a full one, shaped as the vendor's API reference documents them
(tests/fixtures/vendor_docs), are served by the local vendor APIs beside the `tiny` company
in each Stripe API shape, and go through the whole pipeline (`spine run`: load, dbt build,
audits, publishing). Each must reach staging, the build must pass with ERROR 0, every entity
must be audited and published, and what staging holds must be what is served.
"""

from __future__ import annotations

import pytest
from pipeline_runs import SHAPES

DOCUMENTED = {shape.name: shape for shape in SHAPES if shape.documented}
ENTITIES = {"customer", "contact", "revenue", "invoice", "ticket", "usage_event"}

# resource -> (staging model, key column) where each documented record must land.
LANDS_IN = {
    "stripe": {
        "customers": ("staging.stg_stripe__customers", "stripe_customer_id"),
        "products": ("staging.stg_stripe__products", "product_id"),
        "prices": ("staging.stg_stripe__prices", "price_id"),
        "coupons": ("staging.stg_stripe__coupons", "coupon_id"),
        "discounts": ("staging.stg_stripe__discounts", "discount_id"),
        "subscriptions": ("staging.stg_stripe__subscriptions", "subscription_id"),
        "invoices": ("staging.stg_stripe__invoices", "invoice_id"),
        "invoice_payments": ("staging.stg_stripe__invoice_payments", "invoice_payment_id"),
        "charges": ("staging.stg_stripe__charges", "charge_id"),
        "refunds": ("staging.stg_stripe__refunds", "refund_id"),
    },
    "hubspot": {
        "companies": ("staging.stg_hubspot__companies", "company_id"),
        "contacts": ("staging.stg_hubspot__contacts", "contact_id"),
        "deals": ("staging.stg_hubspot__deals", "deal_id"),
    },
    "zendesk": {
        "organizations": ("staging.stg_zendesk__organizations", "organization_id"),
        "users": ("staging.stg_zendesk__users", "user_id"),
        "tickets": ("staging.stg_zendesk__tickets", "ticket_id"),
        "ticket_metrics": ("staging.stg_zendesk__ticket_metrics", "ticket_metric_id"),
        "satisfaction_ratings": ("staging.stg_zendesk__satisfaction_ratings", "satisfaction_rating_id"),
    },
}
# Children of a documented record that land in staging models of their own.
CHILDREN = {
    ("stripe", "subscriptions"): ("staging.stg_stripe__subscription_items", "subscription_id", "subscription_item_id"),
    ("stripe", "invoices"): ("staging.stg_stripe__invoice_lines", "invoice_id", "invoice_line_id"),
}


def _cases():
    from pipeline_runs import documented_records

    for shape in DOCUMENTED.values():
        for name in shape.documented:
            for resource, records in documented_records(name)["records"].items():
                for kind in records:
                    yield pytest.param(shape.name, name, resource, kind, id=f"{shape.name}-{name}-{resource}-{kind}")


@pytest.mark.parametrize("shape", sorted(DOCUMENTED))
def test_documented_records_build_audit_and_publish(shape_runs, shape):
    run = shape_runs[shape]
    assert run.returncode == 0, run.output[-5000:]
    assert " ERROR=0 " in run.dbt_summary, run.dbt_summary
    decided = dict(run.rows("select entity, arg_max(status, decided_at) from quality.publications group by entity"))
    assert set(decided) == ENTITIES and set(decided.values()) == {"published"}, decided
    audited = {r[0] for r in run.rows("select distinct entity from quality.audits")}
    assert audited == ENTITIES


@pytest.mark.parametrize(("shape", "fixture", "resource", "kind"), list(_cases()))
def test_each_documented_record_reaches_staging(shape_runs, shape, fixture, resource, kind):
    run = shape_runs[shape]
    record = run.documented[fixture]["records"][resource][kind]
    vendor = fixture.split("_")[0]
    model, key = LANDS_IN[vendor][resource]
    assert run.value(f"select count(*) from {model} where {key} = ?", record["id"]) == 1, (
        f"{vendor} {resource} ({kind}) {record['id']} is not in {model}"
    )
    child = CHILDREN.get((vendor, resource))
    if child:
        child_model, parent_key, child_key = child
        listed = record["items" if resource == "subscriptions" else "lines"]["data"]
        found = {r[0] for r in run.rows(f"select {child_key} from {child_model} where {parent_key} = ?", record["id"])}
        assert found == {item["id"] for item in listed}


# staging model -> (served table, filter): staging and serving hold the same records.
SERVED = {
    "staging.stg_stripe__invoices": ("serving.invoices", ""),
    "staging.stg_zendesk__tickets": ("serving.ticket_metrics", ""),
    "staging.stg_hubspot__contacts": ("serving.contacts", "where contact_role = 'crm_contact'"),
    "staging.stg_stripe__customers": ("serving.contacts", "where contact_role = 'billing'"),
    "staging.stg_hubspot__companies": ("serving.customer_crosswalk", "where source_system = 'hubspot'"),
    "staging.stg_zendesk__organizations": ("serving.customer_crosswalk", "where source_system = 'zendesk'"),
}
# Parents deleted at the source stay in staging, flagged, for the records that point at them;
# the marts leave them out.
LIVE = {
    "staging.stg_stripe__customers": "where not is_deleted",
    "staging.stg_hubspot__companies": "where not is_archived",
    "staging.stg_zendesk__organizations": "where not is_deleted",
}


@pytest.mark.parametrize("shape", sorted(DOCUMENTED))
@pytest.mark.parametrize("model", sorted(SERVED))
def test_counts_in_staging_equal_counts_served(shape_runs, shape, model):
    run = shape_runs[shape]
    served, where = SERVED[model]
    staged = run.value(f"select count(*) from {model} {LIVE.get(model, '')}")
    assert staged > 0
    assert run.value(f"select count(*) from {served} {where}") == staged


@pytest.mark.parametrize("shape", sorted(DOCUMENTED))
def test_documented_discount_lowers_its_customers_mrr(shape_runs, shape):
    """The full records' forever coupon (25% off 5 seats at 40.00) reaches MRR in both shapes."""
    run = shape_runs[shape]
    customer = run.documented[DOCUMENTED[shape].documented[0]]["records"]["customers"]["full"]["id"]
    gross, discount, mrr = run.rows(
        "select gross_mrr, discount_mrr, mrr from serving.mrr_by_customer_month m"
        " join serving.customer_crosswalk c on c.customer_id = m.customer_id"
        " where c.source_system = 'stripe' and c.source_id = ? and m.month = date '2026-11-01'",
        customer,
    )[0]
    assert (gross, discount, mrr) == (200.0, 50.0, 150.0)
