"""The dlt pipelines: one per source system, all loading into the one warehouse (the DuckDB file,
or PostgreSQL: data_spine.warehouse)."""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from connectors.http import explain
from connectors.hubspot import hubspot_source
from connectors.stripe import stripe_source
from connectors.usage_events import settle, usage_events_source
from connectors.zendesk import zendesk_source
from data_spine.settings import Settings, settings
from data_spine.warehouse import Warehouse

SOURCES = {
    "stripe": stripe_source,
    "hubspot": hubspot_source,
    "zendesk": zendesk_source,
    "usage_events": usage_events_source,
}

# Raw schema per source: dlt's dataset name, and dbt's source schema.
DATASETS = {
    "stripe": "raw_stripe",
    "hubspot": "raw_hubspot",
    "zendesk": "raw_zendesk",
    "usage_events": "raw_usage_events",
}


def make_pipeline(source: str, cfg: Settings | None = None) -> dlt.Pipeline:
    cfg = cfg or settings()
    target = Warehouse.of(cfg)
    target.ensure_database()
    # dlt makes a pipeline's folder the first time, wiping the folder when it holds no state
    # yet: processes that start together on a new data folder (the service's workers, its
    # webserver and daemon; each loads the definitions, which make every pipeline) would crash
    # on each other's half-made folder. One at a time, the later ones find it made.
    cfg.dlt_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.dlt_dir / f".spine_{source}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return dlt.pipeline(
            pipeline_name=f"spine_{source}",
            destination=target.dlt_destination(),
            dataset_name=DATASETS[source],
            pipelines_dir=str(cfg.dlt_dir),
        )


def make_source(source: str, cfg: Settings | None = None, **overrides):
    """Build a source with its configuration resolved the dlt way (config, secrets, env).

    `overrides` replace resolved values, e.g. `base_url=` in tests.
    """
    cfg = cfg or settings()
    if source == "usage_events":
        overrides.setdefault("landing_dir", str(cfg.landing_dir))
    try:
        factory = SOURCES[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(DATASETS)}") from None
    return factory(**overrides)


def placeholder_source(source: str):
    """The source's shape without its credentials: enough to declare assets, not to load."""
    unset = {
        "stripe": {"base_url": "http://unset", "api_key": "unset"},
        "hubspot": {"base_url": "http://unset", "token": "unset"},
        "zendesk": {"base_url": "http://unset", "email": "unset", "api_token": "unset"},
        "usage_events": {},
    }[source]
    return make_source(source, **unset)


def load(source: str, cfg: Settings | None = None, **overrides) -> LoadInfo:
    """Run one source's pipeline; an API that keeps failing raises `SourceRequestError`.

    Like the Dagster assets, it first drops the pipeline's local working state: a load that was
    interrupted (a killed process) is discarded, and the run restores state and cursors from
    the last load the warehouse committed, then reads again from there. Merge on primary keys
    (usage events: skipping message ids already stored) makes re-reading what a half-finished
    load already wrote harmless.
    """
    cfg = cfg or settings()
    pipeline = make_pipeline(source, cfg).drop()
    try:
        info = pipeline.run(make_source(source, cfg, **overrides))
        finish(source, pipeline, cfg, **overrides)
        discard_loaded_files(pipeline)
    except PipelineStepFailed as exc:
        raise explain(exc) or exc from exc
    return info


def finish(source: str, pipeline: dlt.Pipeline, cfg: Settings | None = None, **overrides) -> LoadInfo | None:
    """What a source needs after its load: usage events settle the lines the SQL rejected."""
    if source != "usage_events":
        return None
    cfg = cfg or settings()
    return settle(pipeline, overrides.get("landing_dir", cfg.landing_dir))


def discard_loaded_files(pipeline: dlt.Pipeline) -> int:
    """Delete the files of the load packages the warehouse has committed: each is a copy of the
    records it loaded (people's names and emails included) that nothing reads again, since
    the next load starts by dropping the working state. The packages' manifests stay; a
    package that failed keeps its files for the retry. Files removed."""
    removed = 0
    for jobs in Path(pipeline.working_dir, "load", "loaded").glob("*/completed_jobs"):
        removed += sum(1 for f in jobs.iterdir() if f.is_file())
        shutil.rmtree(jobs)
    return removed
