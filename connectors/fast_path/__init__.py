"""The fast ingestion path of the API connectors (Stripe, HubSpot, Zendesk): the parts of dlt
they do without, and what stands in for each.

dlt still runs every load (sources, resources, state, schema, parquet load files, the DuckDB
load, write dispositions, `parallelized` resources). What the connectors do themselves is how
a page gets from the vendor into an Arrow table, because dlt's own way was too slow and too
big for the platform's target (≥ 50,000 records/s per API source at `large`, ≤ 2 GB):

- **dlt's `RESTClient` and its paginators** (`JSONResponseCursorPaginator`, a `BasePaginator`
  per Zendesk export) → the platform's HTTP client (`data_spine.http_client`: libcurl through
  `pycurl`, tenacity retries honouring `Retry-After`), set up from dlt's runtime settings by
  `connectors.http.ApiClient`, and a paging loop in each connector that reads the cursor from
  the page with simdjson (`Response.json`) without building the records as dicts.
- **dlt's extraction of a resource's pages, item by item** → `Chunk` (a page kept as its body,
  parsed again only if needed), `batches` (pages gathered into batches of records) and
  `read_ahead` (a thread per resource fetching the next batch while dlt writes the last; dlt's
  `parallelized` still runs the resources).
- **dlt's JSON normaliser** (the relational normaliser: `max_table_nesting`, nested objects as
  `parent__child` columns, nested lists as tables linked by `_dlt_parent_id`/`_dlt_list_idx`,
  the `iso_timestamp` detection, variant columns for mixed types) → `RecordReader` (pyarrow's
  JSON reader parses a batch's page bodies straight into Arrow), `to_table`/`shape` (columns
  flattened to the source's nesting depth, ISO 8601 instants typed as UTC timestamps, a field
  of mixed types kept as text), `children` (a kept list as a table keyed by the parent's id and
  the item's `position`), `from_records`, `required`, `split_missing`, `struct_fields`, `UTC`.
  See `pages`'s module doc for every rule.
- **dlt's merge of nested tables** (child rows replaced with their root through
  `_dlt_root_id`) → `Listing` and `child_hints`: child tables merge on the parent's key, a
  parent whose list became empty sends an `EMPTY_MARKER` row (a hard delete), and a run that
  lists everything replaces the tables instead of merging.
- **`dlt.sources.incremental`** (its last value and the hashes of the records at that value,
  kept in the resource state) → `Cursor`: the newest instant read and the ids loaded at that
  instant, applied to a whole Arrow table at once.

Why: the measured speed (`python -m benchmarks`, `make bench` at `large`, records per second
of each API step end to end; figures from the README's "Benchmarks" section as committed):

- dlt's own path (`RESTClient` and paginators, dicts through the normaliser, `insert_values`
  load files; README at commit a6b7904, measuring 7351201, 2026-11-23): no API step finished.
  Each was stopped at the 8 GB memory cap while loading, after 357 s (stripe), 165 s (hubspot)
  and 1,140 s (zendesk) of fetching; without the cap stripe reached 17 GB.
- Arrow tables through parquet, pages parsed with orjson, fetched with `requests` through
  dlt's requests helper (README at commit 1510e5b, measuring 8feeace, 2026-11-23, 2 cores
  Intel Xeon): stripe 33,249, hubspot 33,353, zendesk 80,004 records/s; the three together
  58,350.
- This path (pyarrow's JSON reader, libcurl, simdjson cursors, read-ahead; README at commit
  491b867, measuring 745a6bb, 2026-12-01, 2 cores Intel Xeon, a machine the README calls
  slower than the one before: generation 55 s against 35 s): stripe 68,783, hubspot 54,678,
  zendesk 179,681 records/s; the three together 121,487. A first run's full listing copied
  rather than merged: stripe's load phase 2.0 s against 5.1 s (same section).
- Latest (README at commit 4fff62f, 2026-12-06, same machine, Stripe with a quarter more
  records): stripe 79,516, hubspot 85,923, zendesk 200,764 records/s; together 136,764.

The vendor connectors import this package only (`from connectors import fast_path`), never
`fast_path.pages` directly.
"""

from connectors.fast_path.pages import (
    EMPTY_MARKER,
    UTC,
    Chunk,
    Cursor,
    Listing,
    RecordReader,
    batches,
    child_hints,
    children,
    from_records,
    read_ahead,
    records_of,
    required,
    shape,
    split_missing,
    struct_fields,
    to_table,
)

__all__ = [
    "EMPTY_MARKER",
    "UTC",
    "Chunk",
    "Cursor",
    "Listing",
    "RecordReader",
    "batches",
    "child_hints",
    "children",
    "from_records",
    "read_ahead",
    "records_of",
    "required",
    "shape",
    "split_missing",
    "struct_fields",
    "to_table",
]
