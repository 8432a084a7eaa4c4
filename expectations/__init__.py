"""Data quality for the Data Spine: six dimensions in Great Expectations, run in the warehouse.

Suites are declared as plain data (:mod:`expectations.suite`, one module per entity in
:mod:`expectations.suites`); :mod:`expectations.runner` validates them inside the warehouse
through Great Expectations (on DuckDB through :mod:`expectations.gx_duckdb`, the adapter GX
needs there; on PostgreSQL through GX's own datasource) and records the results. What the two
dialects spell differently is in :mod:`expectations.dialects`. What is done with the results
(publishing, the scorecard, alerts) lives in the `quality` package, one level up.

Great Expectations is imported only when a validation runs: it takes seconds to import, and
the CLI and the orchestrator import this package just to read suite metadata.
"""

from expectations.suite import DIMENSIONS, SEVERITIES, Batch, Check, Suite
from expectations.suites import SUITES, get_suite

__all__ = ["DIMENSIONS", "SEVERITIES", "SUITES", "Batch", "Check", "Suite", "get_suite"]
