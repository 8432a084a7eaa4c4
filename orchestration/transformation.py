"""Transformation assets: the dbt project (staging → intermediate → marts) and its docs site."""

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
    get_asset_key_for_model,
)
from pydantic import Field

from expectations.freshness_windows import MARTS as MARTS_FRESHNESS
from expectations.gx_engine import import_in_background
from expectations.suites import SUITES
from orchestration.console import dbt_console
from orchestration.dbt_manifest import (
    dbt_project,
    dbt_vars,
    keep_parse_state,
    manifest_path,
    prepare_for_run,
    project_digest,
    vars_args,
)
from orchestration.errors import first_line
from orchestration.freshness_policies import how_judged, mart_policy
from orchestration.resources import (
    WAREHOUSE_LOCKED,
    WAREHOUSE_POOL,
    WarehouseResource,
    exclusive_pool,
    retry_when_locked,
)
from privacy.classification import Classification, column_tags, strictest
from quality.publishing import hold_unbuilt


def classified(spec: dg.AssetSpec, columns: Mapping[str, Classification]) -> dg.AssetSpec:
    """`spec` showing how sensitive its table is: each column's classification (and personal
    data) as tags of its column schema, and the strictest class of the table as the metadata
    `classification`."""
    metadata = dict(spec.metadata)
    schema = metadata.get("dagster/column_schema")
    schema = getattr(schema, "schema", schema)  # a TableSchemaMetadataValue holds the TableSchema
    if isinstance(schema, dg.TableSchema):
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=c.name,
                    type=c.type,
                    description=c.description,
                    constraints=c.constraints,
                    tags={**c.tags, **column_tags(columns.get(c.name))},
                )
                for c in schema.columns
            ],
            constraints=schema.constraints,
        )
    level = strictest(columns.values())
    if level:
        metadata["classification"] = level
    return spec.replace_attributes(metadata=metadata)


class SpineDbtTranslator(DagsterDbtTranslator):
    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] in ("model", "seed"):
            spec = classified(
                spec, {name: Classification.of(c.get("meta")) for name, c in props.get("columns", {}).items()}
            )
        if props["resource_type"] == "model" and props.get("fqn", [])[1:2] == ["marts"]:
            window = MARTS_FRESHNESS.get(props["name"])
            return spec.replace_attributes(
                freshness_policy=mart_policy(props["name"]),
                description=(spec.description or "") + (how_judged(window) if window else ""),
            )
        return spec

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "seeds"
        fqn = dbt_resource_props.get("fqn", [])
        layer = fqn[1] if len(fqn) > 2 else None
        return layer if layer in ("staging", "intermediate", "marts") else "transformation"


def run_vars(warehouse: WarehouseResource, extra: Mapping[str, Any] | None = None) -> list[str]:
    """The day the numbers describe and, when dbt's profile would not find it, the warehouse
    (and `extra`, which costs the command a full parse: the prepared one had none)."""
    return vars_args({**dbt_vars(warehouse.as_of_date(), warehouse.file), **(extra or {})})


class DbtBuildConfig(dg.Config):
    """How a run builds the dbt models (run config of `dbt_models`; the UI's launchpad offers it)."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild the incremental models from the whole history (`dbt build --full-refresh`); "
        "their tests then check every row.",
    )
    full_history_tests: bool = Field(
        default=False,
        description="Let the data tests of the incremental models check every row, not only those the run "
        "wrote (the daily schedule does on Sundays).",
    )

    @property
    def whole_history(self) -> bool:
        """Whether the run's checks of the incremental models (the dbt tests, and the audit of
        the event-grain entity) look at every row, not only those the run wrote."""
        return self.full_refresh or self.full_history_tests

    def build_args(self) -> list[str]:
        return ["--full-refresh"] if self.full_refresh else []

    def vars(self) -> dict[str, Any]:
        return {"full_history_tests": True} if self.whole_history else {}

    @classmethod
    def of_run(cls, run_config: Mapping[str, Any]) -> "DbtBuildConfig":
        """The config a run gave `dbt_models` (the defaults when it gave none)."""
        return cls(**run_config.get("ops", {}).get("dbt_models", {}).get("config", {}))


# dbt's unit tests check the SQL logic against fixed inputs: they belong to development and CI
# (the test suite builds the project with them), not to every production build, as dbt advises.
_PRODUCTION_BUILD = ["build", "--exclude-resource-type", "unit_test"]


@dbt_assets(
    manifest=manifest_path(),
    project=dbt_project,
    dagster_dbt_translator=SpineDbtTranslator(
        # Tables a dlt resource fills besides its own (child tables, discounts) are dbt sources
        # of their own that share the resource's asset key (`meta.dagster.asset_key`).
        settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
    ),
    pool=exclusive_pool("dbt_build"),
)
def dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, config: DbtBuildConfig
):
    prepare_for_run(warehouse.as_of_date(), warehouse.file)
    invocation = dbt.cli(
        [*_PRODUCTION_BUILD, *config.build_args(), *run_vars(warehouse, config.vars())],
        context=context,
        raise_on_error=False,
    )
    # This process waits on dbt from here: the audits that follow (the job's executor runs every
    # step in this process) take their library's import now.
    import_in_background()
    with dbt_console("dbt build", context.run.run_config):
        yield from invocation.stream()
    keep_parse_state(invocation)
    if invocation.is_successful():
        return
    error = invocation.get_error()
    if WAREHOUSE_LOCKED in str(error):
        raise retry_when_locked(context) from error
    try:
        failed = build_failures(invocation.get_artifact("run_results.json"))
    except FileNotFoundError:  # dbt stopped before running anything (the project does not parse)
        raise error from None
    # The classification check ends the build after every node ran (on-run-end): dbt reports
    # it as an error of its own, not a node's, so its models are named from its message.
    failed = failed.with_errors(unclassified_columns(str(error)))
    if not failed:  # dbt itself failed (a crash): no node to blame
        raise error
    # What was built is yielded above, so the entities that do not depend on the failed
    # models go on to their audit and publication (the job runs steps whose own inputs were
    # produced: `require_upstream_step_success: False`); the others keep their last version.
    held = hold_entities(warehouse, context.run.run_id, failed)
    raise dg.Failure(
        description=failed.describe()
        + (f"; held back: {', '.join(held)} (serving keeps their last good version)" if held else ""),
        metadata={
            "failed_nodes": dg.MetadataValue.json(failed.errors),
            "skipped_models": len(failed.skipped),
            "held_entities": ", ".join(held) or "none",
        },
        allow_retries=False,
    )


@dataclass(frozen=True)
class BuildFailures:
    """The nodes a `dbt build` could not build or whose error-severity tests failed, with
    the first line of each error, and the models dbt skipped because of them."""

    errors: dict[str, str]
    skipped: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.errors)

    def with_errors(self, errors: Mapping[str, str]) -> "BuildFailures":
        return BuildFailures({**self.errors, **errors}, self.skipped)

    @property
    def unbuilt(self) -> frozenset[str]:
        """Model names whose table is not this run's."""
        return frozenset(name for name in (*self.errors, *self.skipped) if not name.startswith("test "))

    def describe(self) -> str:
        return "; ".join(
            f"dbt {'test' if node.startswith('test ') else 'model'} {node.removeprefix('test ')} failed: {message}"
            for node, message in self.errors.items()
        )


def build_failures(run_results: Mapping[str, Any]) -> BuildFailures:
    errors: dict[str, str] = {}
    skipped: set[str] = set()
    for result in run_results.get("results", []):
        # `model.<project>.<name>`, `test.<project>.<name>.<hash>`, `unit_test.<project>.<model>.<name>`
        parts = result["unique_id"].split(".")
        node_type, name = parts[0], parts[-1] if parts[0] == "unit_test" else parts[2]
        status = result.get("status")
        if status in ("error", "fail") and node_type in ("model", "seed", "snapshot", "test", "unit_test"):
            label = name if node_type in ("model", "seed", "snapshot") else f"test {name}"
            errors[label] = _dbt_error(result.get("message") or status)
        elif status == "skipped" and node_type in ("model", "seed", "snapshot"):
            skipped.add(name)
    return BuildFailures(errors, frozenset(skipped))


# How the check that ends every dbt build (macros/column_classification.sql) opens its error,
# and then one line per column: `  <model>.<column>: <what is wrong>`.
UNCLASSIFIED = "Columns without a valid classification"
_UNCLASSIFIED_COLUMN = re.compile(r"^\s+(\w+)\.(\w+): (.+)$", re.MULTILINE)


def unclassified_columns(message: str) -> dict[str, str]:
    """Model -> what the classification check found wrong with its columns, from a dbt
    command's error (empty when the check did not fail)."""
    if UNCLASSIFIED not in message:
        return {}
    found: dict[str, list[str]] = {}
    for model, column, problem in _UNCLASSIFIED_COLUMN.findall(message.split(UNCLASSIFIED, 1)[1]):
        found.setdefault(model, []).append(f"{column} ({problem.strip()})")
    return {model: f"columns without a valid classification: {'; '.join(columns)}" for model, columns in found.items()}


# dbt's first line only says where: `Runtime Error in model x (models/marts/x.sql)`.
_WHERE = re.compile(r"^\w[\w ]* Error in \w+ \S+ \(.*\)$")


def _dbt_error(message: str) -> str:
    """What went wrong, from a dbt node's error message: the line after dbt's heading."""
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and _WHERE.match(first_line(lines[0])):
        return first_line("\n".join(lines[1:]))
    return first_line(message)


def hold_entities(warehouse: WarehouseResource, run_id: str, failed: BuildFailures) -> list[str]:
    """Hold back (record as held, without an audit) every entity built from a model that is
    not this run's; returns their names."""

    held = []
    with warehouse.connect() as con:
        for suite in SUITES.values():
            missing = sorted(failed.unbuilt & set(suite.models_read))
            if missing:
                cause = "; ".join(f"{m}: {failed.errors[m]}" for m in missing if m in failed.errors)
                reason = (
                    f"not rebuilt in this run: {', '.join(missing)} "
                    f"{'failed' if cause else 'skipped after an upstream failure'}"
                    + (f" ({cause})" if cause else f" ({failed.describe()})")
                )
                hold_unbuilt(con, suite, run_id, reason)
                held.append(suite.entity)
    return held


def _read_layout(manifest: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The models of the marts folder (what consumers read and the reports wait for), and the
    schemas dbt documents (its docs site's catalog), read from the manifest once."""
    parsed = json.loads(manifest.read_text())
    nodes = parsed["nodes"].values()
    marts = sorted(n["name"] for n in nodes if n["resource_type"] == "model" and n["fqn"][1:2] == ["marts"])
    schemas = sorted({n["schema"] for kind in ("nodes", "sources", "seeds") for n in parsed.get(kind, {}).values()})
    return tuple(marts), tuple(schemas)


MARTS, DOCUMENTED_SCHEMAS = _read_layout(manifest_path())
MART_KEYS = [get_asset_key_for_model([dbt_models], name) for name in MARTS]


@dg.asset(
    key="dbt_docs",
    deps=MART_KEYS,
    group_name="reports",
    kinds={"dbt", "html"},
    pool=WAREHOUSE_POOL,
    description="The dbt docs site as one static page: it opens on the project's overview (the marts and "
    "their grain, the metric definitions, the reports), with the lineage from raw sources to every mart; "
    "regenerated only when the dbt project, its vars (the daily as-of date aside) or the warehouse's "
    "tables and columns changed.",
)
def dbt_docs(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    target = Path(warehouse.reports_dir) / "dbt_docs" / "index.html"
    stamp = target.with_name("source.sha256")
    source = _docs_source(warehouse)
    unchanged = target.exists() and stamp.exists() and stamp.read_text() == source
    if not unchanged:
        with dbt_console("dbt docs", context.run.run_config):
            invocation = dbt.cli(["docs", "generate", "--static", *run_vars(warehouse)]).wait()
            keep_parse_state(invocation)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(invocation.target_path / "static_index.html", target)
        stamp.write_text(source)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(target)), "regenerated": not unchanged})


def _docs_source(warehouse: WarehouseResource) -> str:
    """A digest of what the docs site is generated from: the dbt project's code, the vars its
    SQL is compiled with, and the tables and columns of the schemas dbt documents (its catalog;
    the audit and serving schemas written later in a run are none of them). The as-of date is
    left out: it moves every day and changes nothing the site shows but the date literal in
    compiled SQL, which keeps the day the site was last generated for."""
    digest = hashlib.sha256(project_digest().encode())
    vars_ = dbt_vars(warehouse.as_of_date(), warehouse.file)
    vars_.pop("as_of_date", None)
    digest.update(json.dumps(vars_, sort_keys=True).encode())
    with warehouse.connect(read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_schema in (select unnest(?)) order by 1, 2, 3, 4",
            [list(DOCUMENTED_SCHEMAS)],
        ).fetchall()
    digest.update(repr(columns).encode())
    return digest.hexdigest()
