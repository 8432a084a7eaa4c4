"""Zendesk Support: tickets, users, organizations, ticket metrics and satisfaction ratings.

Endpoints  tickets and users: the incremental cursor exports
           `GET {base_url}/api/v2/incremental/<object>/cursor.json` (`start_time` on the first
           page, then `cursor=after_cursor` until `end_of_stream`); organizations, ticket
           metrics and satisfaction ratings: `GET {base_url}/api/v2/<object>.json` with cursor
           pagination (`page[size]=100`, `page[after]`, `meta.has_more`).
Auth       API token as basic auth `{email}/token:{api_token}` (`sources.zendesk.email`,
           `sources.zendesk.api_token`).
Increment  tickets and users resume from the largest `updated_at` already loaded, so a normal
           run reads only what changed.
Write      merge on `id`; a record without `id` (or, for the exports, `updated_at`) goes to
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


def to_unix(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def _incremental(obj: str) -> dict[str, Any]:
    return {
        "name": obj,
        "table_name": quarantine.table_for(obj),
        "processing_steps": [{"map": quarantine.require("zendesk", obj, "id", "updated_at")}],
        "endpoint": {
            "path": f"api/v2/incremental/{obj}/cursor.json",
            "data_selector": obj,
            "paginator": IncrementalExportPaginator(),
            "params": {
                "per_page": 1000,
                "start_time": {
                    "type": "incremental",
                    "cursor_path": "updated_at",
                    "initial_value": "1970-01-01T00:00:00Z",
                    "convert": to_unix,
                    # Quarantine rows carry no cursor; they must not stop the export.
                    "on_cursor_value_missing": "include",
                },
            },
        },
    }


def _paged(obj: str) -> dict[str, Any]:
    return {
        "name": obj,
        "table_name": quarantine.table_for(obj),
        "processing_steps": [{"map": quarantine.require("zendesk", obj, "id")}],
        "endpoint": {
            "path": f"api/v2/{obj}.json",
            "data_selector": obj,
            "params": {"page[size]": 100},
            "paginator": JSONResponseCursorPaginator(
                cursor_path="meta.after_cursor", cursor_param="page[after]", has_more_path="meta.has_more"
            ),
        },
    }


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
                _incremental("tickets"),
                _incremental("users"),
                _paged("organizations"),
                _paged("ticket_metrics"),
                _paged("satisfaction_ratings"),
            ],
        }
    )
