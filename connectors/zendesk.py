"""Zendesk Support: tickets, users, organizations, ticket metrics and satisfaction ratings.

Endpoints  tickets and users: the incremental cursor exports
           `GET {base_url}/api/v2/incremental/<object>/cursor.json` (`start_time` on the first
           page, then `cursor=after_cursor` until `end_of_stream`); ticket metrics: the same
           ticket export with `include=metric_sets`; organizations: the time-based export
           `GET {base_url}/api/v2/incremental/organizations.json` (`start_time`, then
           `next_page` until `end_of_stream`); satisfaction ratings:
           `GET {base_url}/api/v2/satisfaction_ratings.json?start_time=` with cursor
           pagination (`page[size]=100`, `page[after]`, `meta.has_more`).
Auth       API token as basic auth `{email}/token:{api_token}` (`sources.zendesk.email`,
           `sources.zendesk.api_token`).
Increment  every resource resumes from the largest `updated_at` already loaded, so a normal
           run reads only what changed.
Deletes    deleted tickets come through the export with status `deleted`, deleted users with
           `active = false`, deleted organizations with `deleted_at`: rows stay in raw and
           staging filters them out.
Write      merge on `id`; a record without `id` or `updated_at` goes to
           `raw_zendesk.quarantine` with the reason. Ticket custom fields stay a JSON column (their ids differ per account).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dlt
from dlt.sources.helpers.rest_client.paginators import BasePaginator, JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_resources

from connectors import quarantine
from connectors.http import retrying_session


class IncrementalExportPaginator(BasePaginator):
    """Follow `after_cursor` until Zendesk reports `end_of_stream`."""

    def __init__(self) -> None:
        super().__init__()
        self._cursor: str | None = None

    def update_state(self, response, data=None) -> None:
        body = response.json()
        self._cursor = body.get("after_cursor")
        self._has_next_page = bool(self._cursor) and not body.get("end_of_stream", True)

    def update_request(self, request) -> None:
        # After the first page the cursor alone positions the export.
        request.params.pop("start_time", None)
        request.params["cursor"] = self._cursor


class TimeExportPaginator(BasePaginator):
    """Follow `next_page` until the time-based export reports `end_of_stream`."""

    def __init__(self) -> None:
        super().__init__()
        self._next: str | None = None

    def update_state(self, response, data=None) -> None:
        body = response.json()
        self._next = body.get("next_page")
        self._has_next_page = bool(self._next) and not body.get("end_of_stream", True)

    def update_request(self, request) -> None:
        request.url, request.params = self._next, {}


def to_unix(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def _since_last_update() -> dict[str, Any]:
    """The `start_time` parameter: the largest `updated_at` loaded, as unix seconds."""
    return {
        "type": "incremental",
        "cursor_path": "updated_at",
        "initial_value": "1970-01-01T00:00:00Z",
        "convert": to_unix,
        # Quarantine rows carry no cursor; they must not stop the export.
        "on_cursor_value_missing": "include",
    }


def _resource(obj: str, path: str, paginator, data_selector: str | None = None, **params) -> dict[str, Any]:
    return {
        "name": obj,
        "table_name": quarantine.table_for(obj),
        "processing_steps": [{"map": quarantine.require("zendesk", obj, "id", "updated_at")}],
        "endpoint": {
            "path": path,
            "data_selector": data_selector or obj,
            "paginator": paginator,
            "params": {**params, "start_time": _since_last_update()},
        },
    }


def _cursor_export(obj: str) -> dict[str, Any]:
    return _resource(obj, f"api/v2/incremental/{obj}/cursor.json", IncrementalExportPaginator(), per_page=1000)


def _ticket_metrics() -> dict[str, Any]:
    # Metric sets ride along the ticket export, so they change exactly when their ticket does.
    return _resource(
        "ticket_metrics", "api/v2/incremental/tickets/cursor.json", IncrementalExportPaginator(),
        data_selector="metric_sets", per_page=1000, include="metric_sets",
    )


def _organizations() -> dict[str, Any]:
    resource = _resource("organizations", "api/v2/incremental/organizations.json", TimeExportPaginator(), per_page=1000)
    # Present from the first load on, so staging can filter on it before any deletion.
    resource["columns"] = {"deleted_at": {"data_type": "timestamp"}}
    return resource


def _satisfaction_ratings() -> dict[str, Any]:
    return _resource(
        "satisfaction_ratings", "api/v2/satisfaction_ratings.json",
        JSONResponseCursorPaginator(cursor_path="meta.after_cursor", cursor_param="page[after]", has_more_path="meta.has_more"),
        **{"page[size]": 100},
    )


@dlt.source(name="zendesk", max_table_nesting=1)
def zendesk_source(base_url: str = dlt.config.value, email: str = dlt.config.value, api_token: str = dlt.secrets.value):
    yield from rest_api_resources(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "session": retrying_session(),
                "auth": {"type": "http_basic", "username": f"{email}/token", "password": api_token},
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                _cursor_export("tickets"),
                _cursor_export("users"),
                _organizations(),
                _ticket_metrics(),
                _satisfaction_ratings(),
            ],
        }
    )
