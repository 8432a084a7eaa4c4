"""dlt sources for the four source systems, and the pipelines that load them into DuckDB.

Each module is one source system: `stripe` (billing), `hubspot` (CRM), `zendesk` (support)
and `usage_events` (product events from the collector's landing folder). Base URLs and
credentials are dlt configuration (`.dlt/config.toml`, `.dlt/secrets.toml` or environment
variables such as `SOURCES__STRIPE__API_KEY`), so the same code runs against the real vendors.
"""
