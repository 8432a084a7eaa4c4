"""HubSpot CRM: companies, contacts and deals from the CRM v3 objects API.

Endpoints  `GET {base_url}/crm/v3/objects/<type>` (`limit=100`, paged with `paging.next.after`;
           `archived=true` for archived records) and
           `POST {base_url}/crm/v3/objects/<type>/search` (filter and sort on the last-modified
           property, 200 per page; search results carry no associations, so a deal's company
           comes from `POST {base_url}/crm/v4/associations/deals/companies/batch/read`).
Auth       private-app token as Bearer (`sources.hubspot.token`).
Increment  `updatedAt` (HubSpot's `hs_lastmodifieddate`; `lastmodifieddate` for contacts). The
           first run lists everything; later runs search for records modified since the
           largest `updatedAt` loaded. Search stops at 10,000 results per query, so a longer
           result is read as several queries, each starting where the last one ended.
Deletes    archived records are listed (HubSpot offers no filter there) and those archived
           since the last run are loaded with `archived = true`, a soft delete that staging
           filters out.
Write      merge on `id` (the newer `updatedAt` wins); the first run's full listing replaces
           the tables instead (see `fast_path.Listing`). An object without an `id` goes to
           `raw_hubspot.quarantine`.
Shape      HubSpot returns every property as a string inside `properties`; the connector lifts
           the default properties it requests to top-level columns and leaves typing to dbt
           staging, so a property that changes its look never breaks a load (text that reads as
           an instant is typed as a timestamp, as dlt does). The account's custom properties
           named in `sources.hubspot.custom_properties` (by object) are requested too and kept
           together as one JSON column, `custom_properties`: their names are the account's own,
           and which one means what is dbt configuration (var `crm_custom_fields`). A deal's
           company comes from its `companies` association.
Contract   every batch is conformed to `connectors/contracts/hubspot.yml`: each declared
           column exists and is typed, whether or not a record filled it.
Speed      lists are read 100 records a page and searches 200 (HubSpot's maxima), every
           object by a thread of its own a batch ahead, and loaded as Arrow tables of up to
           `BATCH` records (see `connectors.fast_path`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from connectors import fast_path, quarantine
from connectors.http import ApiClient

# HubSpot's default properties the models read; the contract (connectors/contracts/hubspot.yml)
# declares a column for each.
PROPERTIES = {
    "companies": [
        "name",
        "domain",
        "industry",
        "hubspot_owner_id",
        "lifecyclestage",
        "annualrevenue",
        "createdate",
        "hs_lastmodifieddate",
    ],
    "contacts": ["email", "firstname", "lastname", "jobtitle", "associatedcompanyid", "createdate", "lastmodifieddate"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "createdate", "hs_lastmodifieddate"],
}
# The account's custom properties to read as well, by object (`sources.hubspot.custom_properties`):
# they land together in one JSON column, `custom_properties`, since their names are the
# account's own. A name the account does not have is simply not returned.
CUSTOM_PROPERTIES = {"companies": ["customer_status", "stripe_customer_id", "product_workspace_id"]}
CUSTOM = "custom_properties"
MODIFIED = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}
LIST_PAGE = 100  # HubSpot's largest list page
SEARCH_PAGE = 200  # and search page
SEARCH_CAP = 10_000
BATCH = 20_000  # records per Arrow table handed to dlt


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Lift `properties` to columns; keep the association to the deal's company."""
    row = {k: v for k, v in record.items() if k not in ("properties", "associations")}
    row.update(record.get("properties") or {})
    companies = ((record.get("associations") or {}).get("companies") or {}).get("results") or []
    if companies:
        row["company_id"] = companies[0]["id"]
    return row


def to_table(table: pa.Table, custom: Sequence[str] = ()) -> pa.Table:
    """`flatten` for a batch of records (see `fast_path.RecordReader`), column by column; the
    `custom` properties go to one JSON column instead of columns of their own."""
    columns: dict[str, Any] = {}
    lifted: dict[str, Any] = {}
    for name, array in zip(table.column_names, table.columns):
        if name == "properties" and pa.types.is_struct(array.type):
            fields = dict(zip((f.name for f in array.type), fast_path.struct_fields(array)))
            own = {n: fields.pop(n) for n in custom if n in fields}
            lifted = fields
            if own:
                lifted[CUSTOM] = pa.chunked_array(
                    [pa.StructArray.from_arrays([a.combine_chunks() for a in own.values()], names=list(own))]
                )
        elif name == "associations" and pa.types.is_struct(array.type):
            companies = _field(_field(array, "companies"), "results")
            if companies is not None and pa.types.is_list(companies.type):
                first = pc.list_element(pc.if_else(pc.greater(pc.list_value_length(companies), 0), companies, None), 0)
                company_id = _field(first, "id")
                if company_id is not None:
                    lifted.setdefault("company_id", company_id)
        elif name != "properties" and name != "associations":
            columns[name] = array
    company_id = lifted.pop("company_id", None)
    columns |= lifted
    if company_id is not None:
        columns["company_id"] = company_id
    return fast_path.required(fast_path.shape(pa.table(columns), 0, whole=[CUSTOM]), ["id"])


def _field(array, name: str):
    if array is None or not pa.types.is_struct(array.type) or array.type.get_field_index(name) < 0:
        return None
    return pc.struct_field(array, name)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class Api:
    def __init__(self, base_url: str, token: str, custom_properties: dict[str, list[str]] | None = None):
        self.http = ApiClient("hubspot", base_url, {"Authorization": f"Bearer {token}"})
        self.custom = {obj: list((custom_properties or {}).get(obj) or []) for obj in PROPERTIES}

    def properties(self, obj: str) -> list[str]:
        return PROPERTIES[obj] + [p for p in self.custom[obj] if p not in PROPERTIES[obj]]


def _list(api: Api, obj: str, archived: bool) -> Iterator[fast_path.Chunk]:
    params = {"limit": LIST_PAGE, "properties": ",".join(api.properties(obj)), "archived": str(archived).lower()}
    if obj == "deals":
        params["associations"] = "companies"
    while True:
        page = api.http.get(f"crm/v3/objects/{obj}", params)
        yield fast_path.Chunk.of(page, "results")
        after = ((page.json.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return
        params["after"] = after


def _search(api: Api, obj: str, lower: int) -> Iterator[fast_path.Chunk]:
    """Records modified at or after `lower` (epoch ms), oldest first, across as many queries as needed."""
    prop = MODIFIED[obj]
    offset = 0
    while True:
        body = {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(lower)}]}],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": api.properties(obj),
            "limit": SEARCH_PAGE,
            "after": offset,
        }
        page = api.http.post_json(f"crm/v3/objects/{obj}/search", body)
        results = page.json.get("results") or []
        yield fast_path.Chunk.of(page, "results")
        nxt = ((page.json.get("paging") or {}).get("next") or {}).get("after")
        if not nxt:
            return
        offset = int(nxt)
        if offset + SEARCH_PAGE > SEARCH_CAP:
            # Start a new query at the last modification time read; records of that same
            # instant come again and are skipped by the cursor.
            newest = _ms(results[-1]["properties"][prop])
            if newest == lower:
                raise RuntimeError(f"hubspot: more than {SEARCH_CAP} {obj} modified at the same instant")
            lower, offset = newest, 0


def _with_companies(api: Api, chunk: fast_path.Chunk) -> fast_path.Chunk:
    """Attach each deal's company association, which search results leave out."""
    deals = chunk.records  # dicts of their own, to be added to
    ids = [d["id"] for d in deals if d.get("id")]
    if not ids:
        return chunk
    inputs = {"inputs": [{"id": i} for i in ids]}
    answer = api.http.post_json("crm/v4/associations/deals/companies/batch/read", inputs).json
    company = {r["from"]["id"]: r["to"][0]["toObjectId"] for r in answer.get("results") or [] if r.get("to")}
    for deal in deals:
        if deal.get("id") in company:
            deal["associations"] = {
                "companies": {"results": [{"id": str(company[deal["id"]]), "type": "deal_to_company"}]}
            }
    return fast_path.Chunk(deals)


def _fresh(cursor: fast_path.Cursor, table: pa.Table) -> pa.Table:
    """Drop what was loaded before (archived records too: only recent archivals load)."""
    if "updatedAt" not in table.column_names or table["updatedAt"].type != fast_path.UTC:
        return table  # records without a cursor are kept
    return cursor.fresh(table, pc.divide(table["updatedAt"].cast(pa.int64()), 1000))  # epoch ms


def _tables(
    obj: str,
    batch: list[fast_path.Chunk],
    reader: fast_path.RecordReader,
    cursor: fast_path.Cursor,
    listing: fast_path.Listing,
    custom: Sequence[str],
) -> Iterator[Any]:
    records, bad = fast_path.split_missing(reader.read(batch), batch, ["id"])
    if bad:
        yield quarantine.mark(quarantine.row("hubspot", obj, "missing required field(s): id", flatten(r)) for r in bad)
    if len(records):
        table = _fresh(cursor, to_table(records, custom))
        if len(table):
            listing.check(table)
            yield listing.table(table)


def _resource(obj: str, api: Api):
    @dlt.resource(name=obj, primary_key="id", write_disposition="merge", parallelized=True)
    def objects() -> Iterator[Any]:
        # `updatedAt` in epoch ms; searches start there.
        cursor = fast_path.Cursor(dlt.current.resource_state(), "updated_at_ms", drop_older=True)
        first_run = cursor.start == 0
        reader = fast_path.RecordReader("results")

        def chunks() -> Iterator[fast_path.Chunk]:
            for chunk in _list(api, obj, archived=False) if first_run else _search(api, obj, cursor.start):
                yield _with_companies(api, chunk) if obj == "deals" and not first_run else chunk
            # Archived lists cannot be filtered: the cursor keeps only recent archivals.
            yield from _list(api, obj, archived=True)

        # Of two versions of a record, the newer wins.
        listing = fast_path.Listing(obj, full=first_run, newest="updatedAt", source="hubspot")
        for batch in fast_path.read_ahead(fast_path.batches(chunks(), BATCH)):
            yield from _tables(obj, batch, reader, cursor, listing, api.custom[obj])
        yield from listing.missing()
        cursor.save()

    return objects


@dlt.source(name="hubspot", max_table_nesting=0)
def hubspot_source(
    base_url: str = dlt.config.value,
    token: str = dlt.secrets.value,
    custom_properties: dict[str, list[str]] | None = None,
):
    """`custom_properties`: the account's custom properties to read, by object (default
    `CUSTOM_PROPERTIES`; `{}` reads none)."""
    api = Api(base_url, token, CUSTOM_PROPERTIES if custom_properties is None else custom_properties)
    return [_resource(obj, api) for obj in PROPERTIES]
