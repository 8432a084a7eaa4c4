"""Data-quality checks for the Data Spine marts.

Suites are declared as plain data in :mod:`expectations.suites`; :mod:`expectations.runner`
evaluates them and appends the outcome to ``quality.validation_results``;
:mod:`expectations.scorecard` turns a run into per-entity scores.

Great Expectations is imported only when a validation actually runs: it takes seconds to
import, and the CLI and the orchestrator import this package just to read suite metadata.
"""

from expectations.suites import DIMENSIONS, SEVERITIES, SUITES, Check, Suite, get_suite

__all__ = ["DIMENSIONS", "SEVERITIES", "SUITES", "Check", "Suite", "get_suite"]
