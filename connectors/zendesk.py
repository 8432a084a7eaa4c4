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
Write      merge on `id`, the newer `updated_at` winning (an export can return a record twice);
           the first run's full export replaces the tables instead (see `fast_path.Listing`). A
           record without `id` or `updated_at` goes to `raw_zendesk.quarantine` with the reason.
Contract   every batch is conformed to `connectors/contracts/zendesk.yml`: each declared column
           exists and is typed, whether or not a record filled it (a deleted organization's
           `deleted_at`, a rating's `organization_id`, ...).
Nesting    ticket custom fields become the table `tickets__custom_fields` (`ticket_id`,
           `position`, the field's `id` and `value`) and organization domain names
           `organizations__domain_names` (`organization_id`, `position`, `value`), each merged per
           parent: a reloaded ticket or organization replaces its rows. `organization_fields` and
           `user_fields` (the account's custom fields) stay one JSON column each. Other nested
           objects become `parent__child` columns one level deep
           (`reply_time_in_minutes__calendar`).
Speed      exports are read 1,000 records a page (Zendesk's maximum), satisfaction ratings 100,
           every resource by a thread of its own a batch ahead, and loaded as Arrow tables of
           up to `BATCH` records (see `connectors.fast_path`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from connectors import fast_path, quarantine
from connectors.http import ApiClient

EXPORT_PAGE = 1000  # Zendesk's largest export page
RATINGS_PAGE = 100  # and the largest cursor-paginated page
BATCH = 20_000  # records per Arrow table handed to dlt
LEVELS = 1  # nested objects flattened this deep (`reply_time_in_minutes__calendar`)
# Custom fields (the account's own keys): one JSON column each.
WHOLE = ("organization_fields", "user_fields")
CHILDREN = {
    "tickets": ("custom_fields", "tickets__custom_fields", "ticket_id"),
    "organizations": ("domain_names", "organizations__domain_names", "organization_id"),
}


class Api:
    def __init__(self, base_url: str, email: str, api_token: str):
        self.http = ApiClient("zendesk", base_url, basic_auth=(f"{email}/token", api_token))

    def cursor_export(self, obj: str, start_time: int, key: str | None = None, **params) -> Iterator[fast_path.Chunk]:
        """`incremental/<obj>/cursor.json`: `start_time` first, then `cursor` to `end_of_stream`."""
        params = {"per_page": EXPORT_PAGE, **params, "start_time": start_time}
        while True:
            page = self.http.get(f"api/v2/incremental/{obj}/cursor.json", params)
            yield fast_path.Chunk.of(page, key or obj)
            cursor = page.json.get("after_cursor")
            if not cursor or page.json.get("end_of_stream", True):
                return
            # After the first page the cursor alone positions the export.
            params.pop("start_time", None)
            params["cursor"] = cursor

    def time_export(self, obj: str, start_time: int) -> Iterator[fast_path.Chunk]:
        """`incremental/<obj>.json`: `start_time`, then `next_page` until `end_of_stream`."""
        url, params = f"api/v2/incremental/{obj}.json", {"per_page": EXPORT_PAGE, "start_time": start_time}
        while True:
            page = self.http.get(url, params)
            yield fast_path.Chunk.of(page, obj)
            if not page.json.get("next_page") or page.json.get("end_of_stream", True):
                return
            url, params = page.json["next_page"], None

    def cursor_pages(self, obj: str, **params) -> Iterator[fast_path.Chunk]:
        """`<obj>.json` with cursor pagination: `page[after]` while `meta.has_more`."""
        params = {"page[size]": RATINGS_PAGE, **params}
        while True:
            page = self.http.get(f"api/v2/{obj}.json", params)
            yield fast_path.Chunk.of(page, obj)
            meta = page.json.get("meta") or {}
            if not meta.get("has_more") or not meta.get("after_cursor"):
                return
            params["page[after]"] = meta["after_cursor"]


def _tables(
    obj: str,
    batch: list[fast_path.Chunk],
    reader: fast_path.RecordReader,
    cursor: fast_path.Cursor,
    listing: fast_path.Listing,
) -> Iterator[Any]:
    records, bad = fast_path.split_missing(reader.read(batch), batch, ["id", "updated_at"])
    if bad:
        yield quarantine.mark(quarantine.row("zendesk", obj, _reason(r), r) for r in bad)
    if not len(records):
        return
    child = CHILDREN.get(obj)
    table = fast_path.to_table(records, LEVELS, keep=[child[0]] if child else [], whole=WHOLE)
    if table["updated_at"].type != fast_path.UTC:
        # An `updated_at` that is not an instant cannot position the export: set it aside.
        good = [
            r
            for r in fast_path.records_of(batch)
            if r.get("id") not in (None, "") and r.get("updated_at") not in (None, "")
        ]
        yield quarantine.mark(
            quarantine.row("zendesk", obj, "updated_at is not an ISO 8601 timestamp", r) for r in good
        )
        return
    table = cursor.fresh(table, pc.divide(table["updated_at"].cast(pa.int64()), 1_000_000))  # whole seconds
    if not len(table):
        return
    listing.check(table)
    if child and child[0] in table.column_names:
        rows = fast_path.children(table[child[0]], table["id"], child[2], LEVELS - 1, markers=not listing.replacing)
        yield listing.table(table.drop_columns([child[0]]))
        yield listing.child(rows, child[1], child[2])
    else:
        yield listing.table(table)


def _reason(record: dict) -> str:
    missing = [f for f in ("id", "updated_at") if record.get(f) in (None, "")]
    return f"missing required field(s): {', '.join(missing)}"


def _resource(obj: str, key: str, read):
    @dlt.resource(name=obj, primary_key="id", write_disposition="merge", parallelized=True)
    def records() -> Iterator[Any]:
        # Exports return everything updated at or after `start_time` (whole seconds).
        cursor = fast_path.Cursor(dlt.current.resource_state(), "start_time")
        reader = fast_path.RecordReader(key)
        # Exports can return a record twice (updated while the export ran): the newer wins.
        listing = fast_path.Listing(obj, full=cursor.start == 0, newest="updated_at", source="zendesk")
        for batch in fast_path.read_ahead(fast_path.batches(read(cursor.start), BATCH)):
            yield from _tables(obj, batch, reader, cursor, listing)
        child = CHILDREN.get(obj)
        yield from listing.missing({child[1]: child[2]} if child else None)
        cursor.save()

    return records


@dlt.source(name="zendesk", max_table_nesting=1)
def zendesk_source(base_url: str = dlt.config.value, email: str = dlt.config.value, api_token: str = dlt.secrets.value):
    api = Api(base_url, email, api_token)
    return [
        _resource("tickets", "tickets", lambda since: api.cursor_export("tickets", since)),
        _resource("users", "users", lambda since: api.cursor_export("users", since)),
        _resource("organizations", "organizations", lambda since: api.time_export("organizations", since)),
        # Metric sets ride along the ticket export, so they change exactly when their ticket does.
        _resource(
            "ticket_metrics",
            "metric_sets",
            lambda since: api.cursor_export("tickets", since, "metric_sets", include="metric_sets"),
        ),
        _resource(
            "satisfaction_ratings",
            "satisfaction_ratings",
            lambda since: api.cursor_pages("satisfaction_ratings", start_time=since),
        ),
    ]
