"""Great Expectations Data Docs of every audit, built by Great Expectations itself.

Each audit of an entity hands over GX's validation result of each of its batches (GX validates
one expectation suite against one batch; an entity's suite spans several batches, so a run of
it is one validation result per batch, under the entity's suite name and the run's id, as a
GX checkpoint would record them). They are kept in a GX validation results store on disk, and
GX's site builder renders, under the reports folder:

    gx_data_docs/index.html                                   every kept run of every suite
    gx_data_docs/validations/<entity>/<run id>/<time>/<batch>.html
                                                              every expectation of the batch,
                                                              its result and observed value
    gx_data_docs/expectations/<entity>.html                   the entity's whole suite
    gx_validation_results/<entity>/<run id>/<time>/<batch>.json   the store the site is built from

An audit renders only its own pages and its suite's page (`update_data_docs`). The index reads
every stored result, so it is rebuilt once per run, by the scorecard (`build_index`). The store
keeps the latest `RUNS_KEPT` audits of each entity (the index drops the pages of results no
longer stored), so neither the folder nor the index's build time grows without end.

What the pages show is what the scorecard may show: GX prints samples of unexpected values,
so personal data is masked (`masking.mask`, for the batch's `pii` columns) and text cut as in
the results table before a result is stored. GX's views print values, descriptions and
tracebacks into the HTML without escaping them, so those are stored HTML-escaped (GX escapes
exception messages itself). The pages load GX's stylesheets and scripts from public CDNs, as
GX renders them: offline, a validation page still reads as plain HTML, and the index carries
the kept runs as a plain table too (GX's own table needs those scripts).

Great Expectations is imported only when pages are written (seconds to import).
"""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from expectations.escaping import sample_text
from expectations.gx_engine import check_index, ephemeral_context, gx_suite
from expectations.masking import mask
from expectations.suite import Batch, Suite
from expectations.suites import SUITES

SITE = "gx_data_docs"
STORE = "gx_validation_results"
# As many audits per entity as the scorecard's trend shows runs.
RUNS_KEPT = 30
_SITE_NAME = "local_site"
# The store on disk (every kept audit, which the index lists) and one in memory holding one
# audit's results, which its pages are rendered from: GX's site builder lists, and parses the
# run time of, every key of the store it renders from, a cost that would grow with the history.
_KEPT = "kept_validation_results"
_AUDIT = "audit_validation_results"
# Fields of a result that list the values or records that failed.
_SAMPLES = ("partial_unexpected_list", "partial_unexpected_index_list")
# What only GX's COMPLETE result format returns (every failing value, the query that finds
# them): never asked for, and never kept if it were.
_UNBOUNDED = ("unexpected_list", "unexpected_index_list", "unexpected_index_query")


def site_dir(reports_dir: Path) -> Path:
    return Path(reports_dir) / SITE


def page_file(reports_dir: Path, entity: str, run_id: str, validated_at: datetime, batch: str) -> Path:
    """The page of a batch's validation in an audit, where GX writes it."""
    *folders, name = _page_parts(entity, run_id, validated_at, batch)
    return site_dir(reports_dir).joinpath(*folders, name + ".html")


def page_url(entity: str, run_id: str, validated_at: datetime, batch: str) -> str:
    """The same page's URL relative to the reports folder (where the scorecard is)."""
    return f"{SITE}/" + "/".join(quote(p, safe="") for p in _page_parts(entity, run_id, validated_at, batch)) + ".html"


def _page_parts(entity: str, run_id: str, validated_at: datetime, batch: str) -> tuple[str, ...]:
    # GX's layout: `validations/<suite>/<run name>/<run time>/<batch id>`, the run time in UTC
    # as GX's `RunIdentifier` writes it.
    return ("validations", entity, run_id, _run_time(validated_at).strftime("%Y%m%dT%H%M%S.%fZ"), batch)


def update_data_docs(
    reports_dir: Path, suite: Suite, run_id: str, validated_at: datetime, validations: Mapping[str, Any]
) -> list[Path]:
    """Store an audit's validation results (`gx_engine.Evaluation.validations`, per batch) and
    build their pages and the suite's page; `build_index` lists them. Returns the audit's pages."""
    from great_expectations.core.run_identifier import RunIdentifier  # noqa: PLC0415  (import cost)
    from great_expectations.data_context.types.resource_identifiers import (  # noqa: PLC0415
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _context(Path(reports_dir), [suite], pages_from=_AUDIT)
    suite_id = ExpectationSuiteIdentifier(name=suite.entity)
    run = RunIdentifier(run_name=run_id, run_time=_run_time(validated_at))
    keys = []
    for batch in suite.batches:
        key = ValidationResultIdentifier(suite_id, run, batch.name)
        result = shown(validations[batch.name], suite.entity, batch, run)
        for store in (_KEPT, _AUDIT):
            context.stores[store].set(key, result)
        keys.append(key)
    _keep_latest_runs(context.stores[_KEPT], suite.entity, run_id)
    _remove_empty_folders(Path(reports_dir) / STORE / suite.entity)
    # The index reads every stored result: built once per run (`build_index`), not per audit.
    context.build_data_docs(site_names=[_SITE_NAME], resource_identifiers=[*keys, suite_id], build_index=False)
    return [page_file(reports_dir, suite.entity, run_id, validated_at, b.name) for b in suite.batches]


def build_index(reports_dir: Path) -> Path | None:
    """Rebuild the site's index (every stored run of every suite, newest first) and the suites'
    pages; GX drops the pages of results no longer stored. None when no audit kept its results."""
    from great_expectations.data_context.types.resource_identifiers import (  # noqa: PLC0415  (import cost)
        ExpectationSuiteIdentifier,
    )

    if not (Path(reports_dir) / STORE).is_dir():
        return None
    context = _context(Path(reports_dir), list(SUITES.values()), pages_from=_KEPT)
    suite_ids = [ExpectationSuiteIdentifier(name=entity) for entity in SUITES]
    context.build_data_docs(site_names=[_SITE_NAME], resource_identifiers=suite_ids)
    _remove_empty_folders(site_dir(reports_dir) / "validations")
    index = site_dir(reports_dir) / "index.html"
    _add_plain_run_list(index, Path(reports_dir))
    return index


def _add_plain_run_list(index: Path, reports_dir: Path) -> None:
    """GX's index draws its table of runs with scripts from public CDNs: offline it shows none.
    So the page also carries the kept runs as plain HTML, hidden when those scripts loaded."""
    audits: dict[tuple[str, str, str], list[tuple[str, bool]]] = {}
    for stored in sorted((reports_dir / STORE).glob("*/*/*/*.json")):
        entity, run_id, run_time = stored.relative_to(reports_dir / STORE).parts[:3]
        success = json.loads(stored.read_text()).get("success", False)
        audits.setdefault((run_time, entity, run_id), []).append((stored.stem, success))
    rows = []
    for (run_time, entity, run_id), batches in sorted(audits.items(), reverse=True):
        links = ", ".join(
            f'<a href="{quote(f"validations/{entity}/{run_id}/{run_time}/{batch}.html")}">'
            f"{html.escape(batch)}</a>{'' if ok else ' (failed)'}"
            for batch, ok in batches
        )
        status = "all met" if all(ok for _, ok in batches) else "some failed"
        rows.append(
            f"<tr><td>{html.escape(run_time)}</td><td>{html.escape(entity)}</td><td>{status}</td>"
            f"<td>{html.escape(run_id)}</td><td>{links}</td></tr>"
        )
    section = (
        '<section id="spine-run-list" style="margin:1rem">'
        "<h3>Validation runs kept, newest first</h3>"
        "<table><thead><tr><th>run time (UTC)</th><th>suite</th><th>status</th><th>run</th>"
        f"<th>batches</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
        "<script>if (window.jQuery && window.jQuery.fn.bootstrapTable) "
        "{ document.getElementById('spine-run-list').hidden = true; }</script>"
    )
    page = index.read_text()
    index.write_text(page.replace("</body>", section + "</body>", 1) if "</body>" in page else page + section)


def shown(validation: Any, entity: str, batch: Batch, run: Any) -> Any:
    """A copy of a batch's validation result as its page may show it: under the entity's suite
    and the audit's run, personal data masked, values cut and HTML-escaped (see the module)."""
    copied = copy.deepcopy(validation)
    copied.suite_name = entity
    copied.meta["run_id"] = run
    for result in copied.results:
        check = batch.checks[check_index(result)]
        personal = bool(batch.pii & set((check.column or "").split(", ")))
        _show_result(result, batch.pii, personal)
    return copied


def _show_result(result: Any, pii: frozenset[str], personal: bool) -> None:
    config = result.expectation_config
    config.description = html.escape(config.description or "")
    details = result.result or {}
    for field in _UNBOUNDED:
        details.pop(field, None)
    for field in _SAMPLES:
        if details.get(field):
            details[field] = [_shown_value(v, pii, personal) for v in details[field]]
    if details.get("partial_unexpected_counts"):
        details["partial_unexpected_counts"] = _counts(details["partial_unexpected_counts"], pii, personal)
    if "observed_value" in details:
        details["observed_value"] = _shown_value(details["observed_value"], pii, personal)
    for info in _exception_infos(result.exception_info):
        if info.get("exception_traceback"):
            info["exception_traceback"] = html.escape(info["exception_traceback"])


def _shown_value(value: Any, pii: frozenset[str], personal: bool) -> Any:
    if isinstance(value, dict):
        return {k: _text(mask(v) if k in pii else v) for k, v in value.items()}
    return _text(mask(value) if personal else value)


def _text(value: Any) -> Any:
    return html.escape(sample_text(value)) if isinstance(value, str) else value


def _counts(counts: list[dict], pii: frozenset[str], personal: bool) -> list[dict]:
    """GX's table of unexpected values and how often each occurs, as shown: two emails that
    mask alike are one row, their counts added."""
    merged: dict[str, dict] = {}
    for entry in counts:
        value = _shown_value(entry["value"], pii, personal)
        row = merged.setdefault(repr(value), {"value": value, "count": 0})
        row["count"] += entry["count"]
    return list(merged.values())


def _exception_infos(info: Any) -> list[dict]:
    # A failed metric nests its exception under the metric's id (see `gx_engine._error_message`).
    if not isinstance(info, dict):
        return []
    if "exception_traceback" in info:
        return [info]
    return [nested for nested in info.values() if isinstance(nested, dict)]


def _keep_latest_runs(store: Any, entity: str, run_id: str) -> None:
    """Drop the entity's results beyond its `RUNS_KEPT` latest audits, and those of an earlier
    audit in the same run (a retried step): the latest audit of a run replaces it, as in the
    results table."""
    # The backend's keys are tuples (suite, run name, run time, batch); GX's own keys would
    # parse every stored run time first. Run times sort as written (`%Y%m%dT%H%M%S.%fZ`).
    backend = store.store_backend
    mine = backend.list_keys(prefix=(entity,))
    latest: dict[str, str] = {}
    for _, name, at, _ in mine:
        latest[name] = max(latest.get(name, at), at)
    kept = set(sorted(latest, key=latest.__getitem__, reverse=True)[:RUNS_KEPT]) | {run_id}
    for key in mine:
        _, name, at, _ = key
        if name not in kept or at != latest[name]:
            backend.remove_key(key)


def _remove_empty_folders(root: Path) -> None:
    # GX removes a dropped result's file but leaves its run's folders behind.
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _run_time(validated_at: datetime) -> datetime:
    # The results table keeps naive UTC; GX would take a naive time for local time.
    return validated_at.replace(tzinfo=UTC) if validated_at.tzinfo is None else validated_at.astimezone(UTC)


def _context(reports_dir: Path, suites: list[Suite], pages_from: str) -> Any:
    """An in-memory GX context with two validation results stores (`_KEPT` in a folder under
    `reports_dir`, `_AUDIT` in memory), the Data Docs site (another folder) rendering its
    validation pages from the store `pages_from`, and an expectation store holding `suites`
    (the index keeps the pages of the suites it finds there and drops the others')."""
    reports_dir = reports_dir.resolve()  # GX wants its stores and site at absolute paths
    context = ephemeral_context()
    context.add_store(_KEPT, {"class_name": "ValidationResultsStore", "store_backend": _folder(reports_dir / STORE)})
    context.add_store(_AUDIT, {"class_name": "ValidationResultsStore"})
    context.add_data_docs_site(
        _SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "store_backend": _folder(site_dir(reports_dir)),
            # GX's tutorial links and an empty profiling section say nothing about this data.
            "show_how_to_buttons": False,
            "site_section_builders": {"validations": {"source_store_name": pages_from}, "profiling": "None"},
        },
    )
    for suite in suites:
        checks = [replace(c, description=html.escape(c.description)) for c in suite.checks]
        context.suites.add(gx_suite(suite.entity, checks))
    return context


def _folder(path: Path) -> dict[str, str]:
    return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(path)}
