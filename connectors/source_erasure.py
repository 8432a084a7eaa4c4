"""Erasure at the source: a data subject's records deleted through each vendor's own deletion API.

One function per vendor. Each calls the vendor through the platform's HTTP client with dlt's
retry settings (`connectors.http.runtime_policy`: 429, 5xx, dropped connections and cut bodies
are tried again with backoff) and answers an `ErasureCall`; it never raises for what the vendor
answered or failed to answer: a request that still fails after every retry comes back `failed`
with the reason, for the caller to retry the whole request later and report. A 404 for the
object means an earlier request already removed it: `already-gone`, not a failure.

HubSpot  `POST {base_url}/crm/v3/objects/contacts/gdpr-delete` with `{"objectId": "<id>"}`:
         204, the contact deleted for good with its associations (listed nowhere, archived
         included; a read of it is a 404). HubSpot has no event for it: the warehouse keeps
         its copy until the erasure removes it there.
         https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/post-crm-v3-objects-contacts-gdpr-delete
Zendesk  `DELETE {base_url}/api/v2/users/{id}` (soft delete: the user inactive), then
         `DELETE {base_url}/api/v2/deleted_users/{id}` (permanent: the user's personal data
         scrubbed). A deleted user keeps its id: the `deleted_user_id` is the user's id. The
         user is then shown as Zendesk shows a permanently deleted one (`name` "Permanently
         Deleted User", no email, `active` false); closed tickets keep their `requester_id`.
         Zendesk does not let an end user who requested a ticket not yet closed be deleted:
         that refusal comes back `failed`, with its status.
         https://developer.zendesk.com/api-reference/ticketing/users/users/#delete-user
         https://developer.zendesk.com/api-reference/ticketing/users/users/#permanently-delete-user
Stripe   `DELETE {base_url}/v1/customers/{id}`: `{"id", "object": "customer", "deleted": true}`;
         the customer leaves every list, its live subscriptions are canceled and a
         `customer.deleted` event tells the connector. A business's billing account with live
         subscriptions is kept instead: `POST {base_url}/v1/customers/{id}` form-encoded with
         `email=` (and `name=` when asked) clears the person's data from it (`customer.updated`).
         https://docs.stripe.com/api/customers/delete
         https://docs.stripe.com/api/customers/update

Credentials and base URLs are the connectors' own: dlt config and secrets
(`sources.stripe.base_url` and `api_key`, `sources.hubspot.base_url` and `token`,
`sources.zendesk.base_url`, `email` and `api_token`; in the environment `SOURCES__STRIPE__API_KEY`
and so on); each can be passed instead. An `ErasureCall` holds no personal data: the object's
id, the action, the status, and a detail of statuses and the vendor's error codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dlt
import orjson

from connectors.http import HINTS, runtime_policy
from data_spine.http_client import HttpClient, HttpError, RequestPolicy, StatusError, TransferError

DONE, ALREADY_GONE, FAILED = "done", "already-gone", "failed"

# Each vendor's settings as its connector reads them: name -> whether dlt keeps it as a secret.
SETTINGS = {
    "stripe": {"base_url": False, "api_key": True},
    "hubspot": {"base_url": False, "token": True},
    "zendesk": {"base_url": False, "email": False, "api_token": True},
}
# A vendor's error code is shown only when it looks like one: a message could quote the person.
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ErasureCall:
    """What one vendor did with one erasure request.

    `status` is `done`, `already-gone` (an earlier request removed the object) or `failed`
    (worth trying again later); `detail` is one line without personal data."""

    system: str
    action: str
    object_id: str
    status: str
    detail: str


class _NotConfigured(Exception):
    pass


def _settings(system: str, given: dict[str, str | None]) -> dict[str, str]:
    """The vendor's settings: those given, the rest from dlt's config and secrets."""
    found = {}
    for name, secret in SETTINGS[system].items():
        value = given.get(name)
        if value is None:
            value = (dlt.secrets if secret else dlt.config).get(f"sources.{system}.{name}")
        if value in (None, ""):
            raise _NotConfigured(f"sources.{system}.{name} (dlt config or SOURCES__{system.upper()}__{name.upper()})")
        found[name] = str(value)
    return found


def _vendor_code(body: bytes) -> str:
    """The vendor's own code for an error (Stripe's `code` or `type`, HubSpot's `category`,
    Zendesk's `error`), if it has one that is a code."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(answer, dict):
        return ""
    error = answer.get("error")
    if isinstance(error, dict):
        candidates = [error.get("code"), error.get("type"), error.get("title")]
    else:
        candidates = [error, answer.get("category"), answer.get("errorType")]
    for code in candidates:
        if isinstance(code, str) and _CODE.fullmatch(code):
            return code
    return ""


def _failure(exc: HttpError) -> str:
    """A failed request in one line: method, endpoint, status or reason, and the vendor's code."""
    if isinstance(exc, StatusError):
        code = _vendor_code(exc.body)
        hint = HINTS.get(exc.status) or ("the vendor kept failing after every retry" if exc.retryable else "")
        said = f"{exc.method} {exc.endpoint} answered HTTP {exc.status}" + (f" ({code})" if code else "")
        return f"{said}: {hint}" if hint else said
    if isinstance(exc, TransferError):
        return f"{exc.method} {exc.endpoint} got no answer: {exc.reason} (after every retry)"
    return f"{exc.method} {exc.endpoint} failed"


def _gone(exc: HttpError) -> bool:
    return isinstance(exc, StatusError) and exc.status == 404


def erase_hubspot_contact(
    contact_id: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    policy: RequestPolicy | None = None,
) -> ErasureCall:
    """Delete a HubSpot contact for good (HubSpot's GDPR deletion)."""
    contact_id = str(contact_id)

    def call(status: str, detail: str) -> ErasureCall:
        return ErasureCall("hubspot", "gdpr-delete", contact_id, status, detail)

    try:
        found = _settings("hubspot", {"base_url": base_url, "token": token})
    except _NotConfigured as missing:
        return call(FAILED, f"not configured: {missing}")
    client = HttpClient(
        found["base_url"], {"Authorization": f"Bearer {found['token']}"}, policy=policy or runtime_policy()
    )
    try:
        answer = client.post_json("crm/v3/objects/contacts/gdpr-delete", {"objectId": contact_id})
    except HttpError as exc:
        if _gone(exc):
            return call(ALREADY_GONE, f"no contact {contact_id}: deleted before")
        return call(FAILED, _failure(exc))
    return call(DONE, f"contact {contact_id} deleted for good (HTTP {answer.status})")


def erase_zendesk_user(
    user_id: int | str,
    *,
    base_url: str | None = None,
    email: str | None = None,
    api_token: str | None = None,
    policy: RequestPolicy | None = None,
) -> ErasureCall:
    """Delete a Zendesk user, then delete it for good (a user soft-deleted already goes
    straight to the second step; one deleted for good already is `already-gone`)."""
    user_id = str(user_id).strip()

    def call(status: str, detail: str) -> ErasureCall:
        return ErasureCall("zendesk", "permanent-delete", user_id, status, detail)

    if not user_id.isdigit():
        return call(FAILED, "a Zendesk user id is a number")
    try:
        found = _settings("zendesk", {"base_url": base_url, "email": email, "api_token": api_token})
    except _NotConfigured as missing:
        return call(FAILED, f"not configured: {missing}")
    client = HttpClient(
        found["base_url"],
        policy=policy or runtime_policy(),
        basic_auth=(f"{found['email']}/token", found["api_token"]),
    )
    try:
        client.delete(f"api/v2/users/{user_id}")
        soft_deleted_now = True
    except HttpError as exc:
        if not _gone(exc):
            return call(FAILED, _failure(exc))
        # No such user: deleted before, for good or only soft (then the second step remains).
        soft_deleted_now = False
    try:
        client.delete(f"api/v2/deleted_users/{user_id}")
    except HttpError as exc:
        if _gone(exc) and not soft_deleted_now:
            return call(ALREADY_GONE, f"no user {user_id}, nor a deleted one: deleted for good before")
        if _gone(exc):
            # Deleted a moment ago, yet not among the deleted users: the next attempt finds it.
            return call(FAILED, f"user {user_id} deleted, but not yet found among deleted users to delete for good")
        done = "deleted, " if soft_deleted_now else ""
        return call(FAILED, f"user {user_id} {done}not deleted for good: {_failure(exc)}")
    how = "deleted and deleted for good" if soft_deleted_now else "deleted before, now deleted for good"
    return call(DONE, f"user {user_id} {how}")


def erase_stripe_customer(
    customer_id: str,
    keep_account: bool,
    *,
    clear_name: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
    policy: RequestPolicy | None = None,
) -> ErasureCall:
    """Delete a Stripe customer, or (`keep_account`: a business's billing account with live
    subscriptions) keep it and clear the person's email from it, and its name with `clear_name`
    (an individual's name; a business's is the company's)."""
    customer_id = str(customer_id)
    action = ("clear-email-and-name" if clear_name else "clear-email") if keep_account else "delete"

    def call(status: str, detail: str) -> ErasureCall:
        return ErasureCall("stripe", action, customer_id, status, detail)

    try:
        found = _settings("stripe", {"base_url": base_url, "api_key": api_key})
    except _NotConfigured as missing:
        return call(FAILED, f"not configured: {missing}")
    client = HttpClient(
        found["base_url"],
        {"Authorization": f"Bearer {found['api_key']}"},
        policy=policy or runtime_policy(),
    )
    path = f"v1/customers/{customer_id}"
    try:
        if keep_account:
            fields = {"email": "", **({"name": ""} if clear_name else {})}
            answer = client.post_form(path, fields)
        else:
            answer = client.delete(path)
    except HttpError as exc:
        if _gone(exc):
            return call(ALREADY_GONE, f"no customer {customer_id}: deleted before")
        return call(FAILED, _failure(exc))
    try:
        customer = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return call(FAILED, f"{customer_id}: the answer (HTTP {answer.status}) is not JSON")
    if not keep_account:
        if not (isinstance(customer, dict) and customer.get("deleted") is True):
            return call(FAILED, f"customer {customer_id}: the answer does not say it was deleted")
        return call(DONE, f"customer {customer_id} deleted")
    kept = [f for f in fields if not isinstance(customer, dict) or customer.get(f) not in (None, "")]
    if kept:
        return call(FAILED, f"customer {customer_id}: still has {' and '.join(kept)} after the update")
    return call(DONE, f"customer {customer_id} kept, {' and '.join(fields)} cleared")
