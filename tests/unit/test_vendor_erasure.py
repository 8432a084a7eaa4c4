"""Erasure at the source: the connectors' calls of each vendor's own deletion API
(`connectors.source_erasure`) against the local stand-ins serving a `tiny` company.

Each deletion answers as the vendor documents it, removes the person from what the vendor
serves (read back the way the connectors read), holds for a new server on the same folder, is
noted in the vendor's `deletion_requests.jsonl`, is `already-gone` when asked again, needs the
vendor's credentials, and leaves none of the person's data in the vendor's files."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from connectors import hubspot as hubspot_connector
from connectors import stripe as stripe_connector
from connectors import zendesk as zendesk_connector
from connectors.http import ApiClient, SourceRequestError
from connectors.source_erasure import (
    ALREADY_GONE,
    DONE,
    FAILED,
    ErasureCall,
    erase_hubspot_contact,
    erase_stripe_customer,
    erase_zendesk_user,
)
from data_spine.http_client import RequestPolicy
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer
from sample_company.vendor_api.store import DELETION_REQUESTS

pytestmark = pytest.mark.unit

QUICK = RequestPolicy(max_attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.02, timeout_seconds=10)
AS_OF = date(2026, 11, 21)


# --- The company, its people, and a server on a copy of it --------------------------------------


@pytest.fixture(scope="module")
def company(tmp_path_factory) -> Path:
    from sample_company.generate import generate

    root = tmp_path_factory.mktemp("erasure_company")
    generate(root / "sources", root / "landing", preset="tiny", seed=42, as_of=AS_OF, log=lambda *_: None)
    return root / "sources"


@pytest.fixture
def sources(company, tmp_path) -> Path:
    """A copy of the company of the test's own: deletions change the files."""
    return Path(shutil.copytree(company, tmp_path / "sources"))


@pytest.fixture
def server(sources):
    with VendorApiServer(sources) as running:
        yield running


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _person(sources: Path) -> dict:
    """Someone in all three tools: a HubSpot contact and a Zendesk user of the same email, who
    requested tickets (all closed), and the billing email of a Stripe customer with a live
    subscription."""
    tickets = _records(sources / "zendesk" / "tickets.jsonl")
    requested: dict[int, set] = {}
    for t in tickets:
        requested.setdefault(t.get("requester_id"), set()).add(t.get("status"))
    live = {s["customer"] for s in _records(sources / "stripe" / "subscriptions.jsonl") if s["status"] == "active"}
    customers = {c.get("email"): c for c in _records(sources / "stripe" / "customers.jsonl") if c["id"] in live}
    users = {u["email"]: u for u in _records(sources / "zendesk" / "users.jsonl") if u.get("email")}
    for contact in _records(sources / "hubspot" / "contacts.jsonl"):
        email = contact["properties"].get("email")
        user = users.get(email)
        if email in customers and user and requested.get(user["id"]) == {"closed"}:
            return {
                "email": email,
                "name": user["name"],
                "contact": contact,
                "user": user,
                "customer": customers[email],
            }
    raise AssertionError("the tiny company has nobody in all three tools")


@pytest.fixture
def person(sources) -> dict:
    return _person(sources)


def _hubspot(server, **given):
    return {"base_url": server.base_url("hubspot"), "token": DEMO_CREDENTIALS["hubspot_token"], "policy": QUICK} | given


def _zendesk(server, **given):
    creds = {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]}
    return {"base_url": server.base_url("zendesk"), **creds, "policy": QUICK} | given


def _stripe(server, **given):
    return {
        "base_url": server.base_url("stripe"),
        "api_key": DEMO_CREDENTIALS["stripe_api_key"],
        "policy": QUICK,
    } | given


def _deletions(sources: Path, vendor: str) -> list[dict]:
    path = sources / vendor / DELETION_REQUESTS
    return _records(path) if path.exists() else []


def _holds(sources: Path, vendor: str, *needles: str) -> list[str]:
    """The vendor's files (indexes included) holding any of `needles`, whatever their case."""
    found = []
    for path in sorted((sources / vendor).rglob("*")):
        if path.is_file():
            text = path.read_bytes().lower()
            if any(n.lower().encode() in text for n in needles):
                found.append(str(path.relative_to(sources)))
    return found


def _raw(server, method: str, path: str, headers: dict, body: bytes | None = None) -> tuple[int, dict, bytes]:
    """One request as it goes over the wire: (status, headers, body)."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def _zendesk_auth() -> dict:
    token = f"{DEMO_CREDENTIALS['zendesk_email']}/token:{DEMO_CREDENTIALS['zendesk_api_token']}"
    return {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}


# --- Reading back the way the connectors read ----------------------------------------------------


def _hubspot_contacts(server, archived: bool) -> list[dict]:
    api = hubspot_connector.Api(server.base_url("hubspot"), DEMO_CREDENTIALS["hubspot_token"])
    return [r for chunk in hubspot_connector._list(api, "contacts", archived) for r in chunk.records]


def _hubspot_search(server) -> list[dict]:
    api = hubspot_connector.Api(server.base_url("hubspot"), DEMO_CREDENTIALS["hubspot_token"])
    return [r for chunk in hubspot_connector._search(api, "contacts", 0) for r in chunk.records]


def _zendesk_export(server, obj: str) -> list[dict]:
    api = zendesk_connector.Api(
        server.base_url("zendesk"), DEMO_CREDENTIALS["zendesk_email"], DEMO_CREDENTIALS["zendesk_api_token"]
    )
    return [r for chunk in api.cursor_export(obj, 0) for r in chunk.records]


def _stripe_api(server) -> stripe_connector.Api:
    return stripe_connector.Api(server.base_url("stripe"), DEMO_CREDENTIALS["stripe_api_key"], None)


def _stripe_get(server, path: str) -> dict:
    return orjson.loads(_stripe_api(server).http.get(path).body)


def _stripe_list(server, path: str, **params) -> list[dict]:
    return [r for chunk in _stripe_api(server).list(path, params) for r in chunk.records]


# --- HubSpot ---------------------------------------------------------------------------------------


def test_hubspot_gdpr_delete_removes_the_contact_for_good(server, sources, person):
    contact_id = person["contact"]["id"]
    assert contact_id in {c["id"] for c in _hubspot_contacts(server, archived=False)}

    call = erase_hubspot_contact(contact_id, **_hubspot(server))

    assert call == ErasureCall("hubspot", "gdpr-delete", contact_id, DONE, call.detail)
    assert person["email"] not in call.detail
    for running in (server, VendorApiServer(sources).start()):
        assert contact_id not in {c["id"] for c in _hubspot_contacts(running, archived=False)}
        assert contact_id not in {c["id"] for c in _hubspot_contacts(running, archived=True)}
        assert contact_id not in {c["id"] for c in _hubspot_search(running)}
        client = ApiClient(
            "hubspot", running.base_url("hubspot"), {"Authorization": f"Bearer {DEMO_CREDENTIALS['hubspot_token']}"}
        )
        with pytest.raises(SourceRequestError) as read:
            client.get(f"crm/v3/objects/contacts/{contact_id}")
        assert read.value.status == 404
        if running is not server:
            running.stop()
    [noted] = _deletions(sources, "hubspot")
    assert noted["method"] == "POST" and noted["path"] == "/hubspot/crm/v3/objects/contacts/gdpr-delete"
    assert noted["object_id"] == contact_id and noted["status"] == 204 and noted["at"]
    assert _holds(sources, "hubspot", person["email"]) == []

    again = erase_hubspot_contact(contact_id, **_hubspot(server))
    assert again.status == ALREADY_GONE and again.object_id == contact_id
    assert [d["status"] for d in _deletions(sources, "hubspot")] == [204, 404]


def test_hubspot_gdpr_delete_answers_as_documented(server, sources, person):
    """204 without a body; by email with `idProperty`; an unknown email is 204 (HubSpot
    blocklists it), an unknown id 404; an archived contact leaves the archived listing too;
    other objects' associations to the contact go with it."""
    contacts, deals = sources / "hubspot" / "contacts.jsonl", sources / "hubspot" / "deals.jsonl"
    rows = _records(contacts)
    archived = next(r for r in rows if r["id"] != person["contact"]["id"])
    archived.update(archived=True, archivedAt="2026-11-20T09:30:00.000Z")
    contacts.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    deal_rows = _records(deals)
    deal_rows[0].setdefault("associations", {})["contacts"] = {
        "results": [{"id": archived["id"], "type": "deal_to_contact"}]
    }
    deals.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in deal_rows))
    auth = {"Authorization": f"Bearer {DEMO_CREDENTIALS['hubspot_token']}", "Content-Type": "application/json"}
    path = "/hubspot/crm/v3/objects/contacts/gdpr-delete"

    by_email = json.dumps({"objectId": person["email"].upper(), "idProperty": "email"}).encode()
    status, headers, body = _raw(server, "POST", path, auth, by_email)
    assert (status, body) == (204, b"") and "Content-Type" not in headers
    assert person["contact"]["id"] not in {c["id"] for c in _hubspot_contacts(server, archived=False)}

    assert archived["id"] in {c["id"] for c in _hubspot_contacts(server, archived=True)}
    assert erase_hubspot_contact(archived["id"], **_hubspot(server)).status == DONE
    assert archived["id"] not in {c["id"] for c in _hubspot_contacts(server, archived=True)}
    assert "contacts" not in (_records(deals)[0].get("associations") or {})

    unknown_email = json.dumps({"objectId": "nobody@example.com", "idProperty": "email"}).encode()
    assert _raw(server, "POST", path, auth, unknown_email)[0] == 204
    status, _, body = _raw(server, "POST", path, auth, json.dumps({"objectId": "29999999"}).encode())
    assert status == 404 and orjson.loads(body)["category"] == "OBJECT_NOT_FOUND"
    assert _raw(server, "POST", path, auth, b"{}")[0] == 400
    # The log names the contact an email found, never the email.
    assert [d["object_id"] for d in _deletions(sources, "hubspot")] == [
        person["contact"]["id"],
        archived["id"],
        None,
        None,
        None,
    ]
    assert _holds(sources, "hubspot", person["email"], "nobody@example.com") == []


# --- Zendesk ---------------------------------------------------------------------------------------


def test_zendesk_user_is_deleted_then_deleted_for_good(server, sources, person):
    user_id = person["user"]["id"]
    requested = {t["id"] for t in _zendesk_export(server, "tickets") if t.get("requester_id") == user_id}
    assert requested

    call = erase_zendesk_user(user_id, **_zendesk(server))

    assert call == ErasureCall("zendesk", "permanent-delete", str(user_id), DONE, call.detail)
    for running in (server, VendorApiServer(sources).start()):
        [user] = [u for u in _zendesk_export(running, "users") if u["id"] == user_id]
        # Zendesk's placeholder for a permanently deleted user: no personal data left.
        assert user["name"] == "Permanently Deleted User" and user["email"] is None and user["active"] is False
        assert user["organization_id"] is None and user["updated_at"] > person["user"]["updated_at"]
        # Closed tickets stay, naming the requester by id only.
        tickets = {t["id"] for t in _zendesk_export(running, "tickets") if t.get("requester_id") == user_id}
        assert tickets == requested
        if running is not server:
            running.stop()
    noted = _deletions(sources, "zendesk")
    assert [(d["method"], d["path"], d["object_id"], d["status"]) for d in noted] == [
        ("DELETE", f"/zendesk/api/v2/users/{user_id}", str(user_id), 200),
        ("DELETE", f"/zendesk/api/v2/deleted_users/{user_id}", str(user_id), 200),
    ]
    assert _holds(sources, "zendesk", person["email"], person["name"]) == []

    again = erase_zendesk_user(str(user_id), **_zendesk(server))
    assert again.status == ALREADY_GONE
    assert [d["status"] for d in _deletions(sources, "zendesk")][2:] == [404, 404]


def test_zendesk_answers_as_documented_and_a_soft_deleted_user_goes_on_to_the_second_step(server, sources, person):
    user_id = person["user"]["id"]
    auth = _zendesk_auth()
    # Deleted for good only once deleted.
    assert _raw(server, "DELETE", f"/zendesk/api/v2/deleted_users/{user_id}", auth)[0] == 404

    status, _, body = _raw(server, "DELETE", f"/zendesk/api/v2/users/{user_id}.json", auth)
    user = orjson.loads(body)["user"]
    assert status == 200 and user["id"] == user_id and user["active"] is False
    [exported] = [u for u in _zendesk_export(server, "users") if u["id"] == user_id]
    assert exported["active"] is False and exported["email"] == person["email"]
    status, _, body = _raw(server, "GET", f"/zendesk/api/v2/deleted_users/{user_id}", auth)
    assert status == 200 and orjson.loads(body)["deleted_user"]["id"] == user_id

    # An erasure whose first step an earlier attempt did finishes the second.
    call = erase_zendesk_user(user_id, **_zendesk(server))
    assert call.status == DONE
    assert _raw(server, "GET", f"/zendesk/api/v2/deleted_users/{user_id}", auth)[0] == 404
    assert _raw(server, "DELETE", f"/zendesk/api/v2/users/{user_id}", auth)[0] == 404
    assert _holds(sources, "zendesk", person["email"]) == []
    assert erase_zendesk_user("not-a-number", **_zendesk(server)).status == FAILED


# --- Stripe ----------------------------------------------------------------------------------------


def test_stripe_customer_is_deleted(server, sources, person):
    customer_id = person["customer"]["id"]
    live = {s["id"] for s in _stripe_list(server, "v1/subscriptions") if s["customer"] == customer_id}
    assert live

    call = erase_stripe_customer(customer_id, keep_account=False, **_stripe(server))

    assert call == ErasureCall("stripe", "delete", customer_id, DONE, call.detail)
    for running in (server, VendorApiServer(sources).start()):
        assert customer_id not in {c["id"] for c in _stripe_list(running, "v1/customers")}
        assert _stripe_get(running, f"v1/customers/{customer_id}") == {
            "id": customer_id,
            "object": "customer",
            "deleted": True,
        }
        # Stripe cancels a deleted customer's subscriptions at once.
        theirs = [s for s in _stripe_list(running, "v1/subscriptions", status="all") if s["customer"] == customer_id]
        assert {s["id"] for s in theirs} >= live and {s["status"] for s in theirs} == {"canceled"}
        events = _stripe_list(running, "v1/events", type="customer.*")
        [deleted] = [e for e in events if e["type"] == "customer.deleted"]
        assert deleted["data"]["object"]["id"] == customer_id and deleted["data"]["object"]["email"] is None
        assert {
            e["data"]["object"]["id"] for e in _stripe_list(running, "v1/events", type="customer.subscription.*")
        } == live
        if running is not server:
            running.stop()
    [noted] = _deletions(sources, "stripe")
    assert (noted["method"], noted["path"], noted["object_id"], noted["status"]) == (
        "DELETE",
        f"/stripe/v1/customers/{customer_id}",
        customer_id,
        200,
    )
    assert _holds(sources, "stripe", person["email"]) == []

    again = erase_stripe_customer(customer_id, keep_account=False, **_stripe(server))
    assert again.status == ALREADY_GONE
    status, _, body = _raw(
        server,
        "DELETE",
        f"/stripe/v1/customers/{customer_id}",
        {"Authorization": f"Bearer {DEMO_CREDENTIALS['stripe_api_key']}"},
    )
    assert status == 404 and orjson.loads(body)["error"]["code"] == "resource_missing"


def test_stripe_business_account_is_kept_with_the_persons_email_cleared(server, sources, person):
    customer = person["customer"]

    call = erase_stripe_customer(customer["id"], keep_account=True, **_stripe(server))

    assert (call.system, call.action, call.object_id, call.status) == ("stripe", "clear-email", customer["id"], DONE)
    for running in (server, VendorApiServer(sources).start()):
        [kept] = [c for c in _stripe_list(running, "v1/customers") if c["id"] == customer["id"]]
        assert kept["email"] is None and kept["name"] == customer["name"]
        assert kept["metadata"] == customer["metadata"]
        [updated] = [
            e for e in _stripe_list(running, "v1/events", type="customer.*") if e["type"] == "customer.updated"
        ]
        assert updated["data"]["object"]["email"] is None
        live = [s for s in _stripe_list(running, "v1/subscriptions") if s["customer"] == customer["id"]]
        assert live, "the business keeps its subscriptions"
        if running is not server:
            running.stop()
    [noted] = _deletions(sources, "stripe")
    assert (noted["method"], noted["object_id"], noted["status"]) == ("POST", customer["id"], 200)
    assert _holds(sources, "stripe", person["email"]) == []

    both = erase_stripe_customer(customer["id"], keep_account=True, clear_name=True, **_stripe(server))
    assert (both.action, both.status) == ("clear-email-and-name", DONE)
    assert _stripe_get(server, f"v1/customers/{customer['id']}")["name"] is None
    assert erase_stripe_customer("cus_nobody", keep_account=True, **_stripe(server)).status == ALREADY_GONE


# --- For every vendor ---------------------------------------------------------------------------


ERASE = {
    "hubspot": (lambda p: p["contact"]["id"], erase_hubspot_contact, _hubspot, {"token": "pat-wrong"}),
    "zendesk": (lambda p: p["user"]["id"], erase_zendesk_user, _zendesk, {"api_token": "wrong"}),
    "stripe": (
        lambda p: p["customer"]["id"],
        lambda i, **kw: erase_stripe_customer(i, keep_account=False, **kw),
        _stripe,
        {"api_key": "sk_test_wrong"},
    ),
}


@pytest.mark.parametrize("vendor", sorted(ERASE))
def test_wrong_credentials_are_refused_and_nothing_is_deleted(vendor, server, sources, person):
    object_id, erase, settings, wrong = ERASE[vendor]
    before = {p.name: p.read_bytes() for p in (sources / vendor).glob("*.jsonl")}

    call = erase(object_id(person), **settings(server, **wrong))

    assert call.status == FAILED and "HTTP 401" in call.detail and "check the credentials" in call.detail
    assert wrong[next(iter(wrong))] not in call.detail
    assert {p.name: p.read_bytes() for p in (sources / vendor).glob("*.jsonl")} == before
    assert _deletions(sources, vendor) == []


@pytest.mark.parametrize("vendor", sorted(ERASE))
def test_a_vendor_failing_briefly_is_retried_and_one_failing_for_good_is_reported(vendor, server, sources, person):
    object_id, erase, settings, _ = ERASE[vendor]
    server.faults.set(server_errors=QUICK.max_attempts, vendor=vendor)
    failed = erase(object_id(person), **settings(server))
    assert failed.status == FAILED and "HTTP 503" in failed.detail and "after every retry" in failed.detail
    assert _deletions(sources, vendor) == []

    server.faults.set(server_errors=QUICK.max_attempts - 1, vendor=vendor)
    assert erase(object_id(person), **settings(server)).status == DONE


def test_settings_come_from_dlt_config_and_secrets_as_the_connectors_read_them(server, person, monkeypatch):
    monkeypatch.setenv("SOURCES__HUBSPOT__BASE_URL", server.base_url("hubspot"))
    monkeypatch.delenv("SOURCES__HUBSPOT__TOKEN", raising=False)
    missing = erase_hubspot_contact(person["contact"]["id"], policy=QUICK)
    assert missing.status == FAILED and "sources.hubspot.token" in missing.detail

    monkeypatch.setenv("SOURCES__HUBSPOT__TOKEN", DEMO_CREDENTIALS["hubspot_token"])
    assert erase_hubspot_contact(person["contact"]["id"], policy=QUICK).status == DONE


def test_an_unreachable_vendor_is_a_failure_not_an_exception(person):
    call = erase_stripe_customer(
        person["customer"]["id"], keep_account=False, base_url="http://127.0.0.1:9/stripe", api_key="sk", policy=QUICK
    )
    assert call.status == FAILED and "no answer" in call.detail
