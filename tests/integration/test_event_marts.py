"""The collectors' documented payloads all the way to the usage marts: landed by the real
connector beside a minimal CRM served by the local vendor APIs, then built by dbt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbt_runs import passed, run_dbt
from event_payloads import RAW, land, message_id, payloads, query

from connectors.pipelines import load
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

# A minimal CRM: one HubSpot company per account the payloads name (by product_workspace_id),
# no billing, no support. The objects the local vendor APIs serve, each an empty list but these.
CRM = {
    "hubspot:1": ("Initech", "initech.com", "0e8c78ea9d97a7b8185e8632"),  # Segment's group example
    "hubspot:2": ("Globex", "globex.com", "acct_123"),  # the B2B spec's context.groupId
    "hubspot:3": ("MyGroup", "mygroup.io", "12345"),  # RudderStack's group example
    "hubspot:4": ("Snowplow Demo", "snowplow-demo.com", "ws_100042"),  # the Snowplow workspace entity
}
VENDOR_OBJECTS = {
    "hubspot": ("companies", "contacts", "deals"),
    "stripe": (
        "customers",
        "products",
        "prices",
        "subscriptions",
        "invoices",
        "charges",
        "refunds",
        "coupons",
        "discounts",
        "invoice_payments",
    ),
    "zendesk": ("organizations", "users", "tickets", "ticket_metrics", "satisfaction_ratings"),
}
CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
}
# payload -> (customer, where its workspace came from)
CUSTOMERS = {
    "segment/track": ("hubspot:2", "event"),
    "segment/identify": ("hubspot:1", "user"),  # the user's group call
    "segment/group": ("hubspot:1", "event"),
    "segment/page": ("hubspot:1", "user"),
    "segment/screen": ("hubspot:1", "user"),
    "segment/alias": ("hubspot:1", "anonymous_id"),  # a new user id, on the grouped device
    "rudderstack/track": ("hubspot:3", "anonymous_id"),
    "rudderstack/identify": ("hubspot:3", "anonymous_id"),
    "rudderstack/group": ("hubspot:3", "event"),
    "rudderstack/page": ("hubspot:3", "anonymous_id"),
    "snowplow/page_view": ("hubspot:4", "event"),
    "snowplow/link_click": ("hubspot:4", "event"),
    "snowplow/struct": ("hubspot:4", "event"),
}


def _crm_sources(folder: Path) -> Path:
    for system, objects in VENDOR_OBJECTS.items():
        (folder / system).mkdir(parents=True)
        for obj in objects:
            (folder / system / f"{obj}.jsonl").write_text("")
    created = "2013-01-01T00:00:00.000Z"
    companies = [
        {
            "id": customer.split(":")[1],
            "createdAt": created,
            "updatedAt": created,
            "archived": False,
            "properties": {
                "name": name,
                "domain": domain,
                "product_workspace_id": workspace,
                "createdate": created,
                "hs_lastmodifieddate": created,
                "hs_object_id": customer.split(":")[1],
            },
        }
        for customer, (name, domain, workspace) in CRM.items()
    ]
    (folder / "hubspot" / "companies.jsonl").write_text("".join(json.dumps(c) + "\n" for c in companies))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The landed payloads and the minimal CRM, built by dbt up to the usage marts."""
    cfg, _ = land(tmp_path_factory.mktemp("formats"))
    root = tmp_path_factory.mktemp("crm")
    with VendorApiServer(_crm_sources(root / "sources")) as api:
        for system in VENDOR_OBJECTS:
            load(system, cfg, base_url=api.base_url(system), **CREDENTIALS[system])
    # Tests of the selected models that reach models outside the selection are left out.
    result = run_dbt(
        ["build", "--select", "+usage_events", "+int_usage_accounts", "--indirect-selection", "cautious"],
        cfg.warehouse,
        root / "target",
    )
    assert passed(result), result.stdout[-4000:]
    return cfg


def test_every_payload_reaches_the_usage_events_mart_with_its_customer(built):
    rows = {
        r[0]: r[1:]
        for r in query(
            built, "select event_id, customer_id, workspace_source, event_type, event_name from marts.usage_events"
        )
    }
    for name, payload in payloads().items():
        customer, source = CUSTOMERS[name]
        call, event = RAW[name][:2]
        assert rows[message_id(payload)] == (customer, source, call, event.lower() if event else None), name
    assert len(rows) == len(CUSTOMERS)


def test_usage_measures_count_product_events_only(built):
    # Segment's user 97980cfea0067 made an identify, a group, a page and a screen call that day.
    assert query(
        built,
        "select workspace_id, user_id, activity_date::varchar, events from intermediate.int_usage_user_days "
        "order by all",
    ) == [
        ("0e8c78ea9d97a7b8185e8632", "97980cfea0067", "2015-02-23", 2),
        ("acct_123", "AiUGstSDIg", "2015-12-12", 1),
        ("ws_100042", "jon.doe@email.com", "2013-11-26", 2),
    ]


def test_group_traits_name_each_account_and_its_domain(built):
    assert query(
        built,
        "select account_id, account_name, account_domain, first_seen_at::varchar, group_calls "
        "from intermediate.int_usage_accounts order by all",
    ) == [
        ("0e8c78ea9d97a7b8185e8632", "Initech", "initech.com", "2015-02-23 22:28:55.111", 1),
        ("12345", "MyGroup", None, "2020-01-09 10:01:53.558", 1),
    ]
