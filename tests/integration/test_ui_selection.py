"""Every selection the Dagster UI offers can be materialized on its own.

`spine dev` (the local vendor APIs and `dagster dev`: webserver, daemon, queued runs) serves a
tiny company from a private data folder and instance. Through the webserver's GraphQL API,
with the request the UI's "Materialize" button sends (the implicit asset job, an asset
selection and the checks of the selected assets), the test launches one raw asset of each
source alone (a subset of each dlt source and of its monitor checks; the usage source has a
single asset) and one mart with all its upstreams (subsets of three sources, the seeds and
the dbt models and tests it needs), all at once as a user clicking through would; each run
must succeed and materialize exactly its selection.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dlt
import duckdb
import pytest
import requests
from pipeline_runs import LAUNCH, free_port, prepare, spine_dev, stop_group

from quality.source_monitors import detect_drift

LOCATION = "data_spine"  # workspace.yaml
REPOSITORY = "__repository__"  # the repository of a `Definitions` object
ASSET_JOB = "__ASSET_JOB"  # the job the UI launches asset selections with
RAW_ASSETS = [("stripe", "customers"), ("hubspot", "companies"), ("zendesk", "tickets"), ("usage_events", "events")]
MART = ("marts", "contacts")
STARTUP_SECONDS = 240
RUNS_SECONDS = 900

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    isMaterializable
    dependencyKeys { path }
    assetChecksOrError { ... on AssetChecks { checks { name assetKey { path } } } }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      assetMaterializations { assetKey { path } }
    }
  }
}"""

LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""


class Ui:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def query(self, query: str, **variables) -> dict:
        response = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_loaded(self, process: subprocess.Popen, log: Path) -> list[dict]:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"spine dev exited:\n{log.read_text()[-3000:]}"
            try:
                nodes = self.query(ASSET_NODES)["assetNodes"]
                if nodes:
                    return nodes
            except (requests.ConnectionError, requests.HTTPError, AssertionError):
                pass
            time.sleep(2)
        pytest.fail(f"the Dagster UI did not load the definitions in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")

    def launch(self, assets: list[list[str]], checks: list[dict]) -> str:
        params = {
            "runConfigData": {},
            "mode": "default",
            "executionMetadata": {"tags": []},
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "pipelineName": ASSET_JOB,
                "assetSelection": [{"path": path} for path in assets],
                "assetCheckSelection": [
                    {"assetKey": {"path": c["assetKey"]["path"]}, "name": c["name"]} for c in checks
                ],
            },
        }
        result = self.query(LAUNCH, executionParams=params)["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict:
        return self.query(RUN, runId=run_id)["runOrError"]

    def messages(self, run_id: str) -> list[str]:
        events = self.query(LOGS, runId=run_id)["logsForRun"].get("events", [])
        return [e["message"] for e in events if e.get("message")]


def _upstream(nodes: dict[tuple[str, ...], dict], key: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The key and everything it is built from (what "Materialize with upstream" selects)."""
    seen, todo = set(), [key]
    while todo:
        current = todo.pop()
        if current in seen or current not in nodes:
            continue
        seen.add(current)
        todo += [tuple(d["path"]) for d in nodes[current]["dependencyKeys"]]
    return {k for k in seen if nodes[k]["isMaterializable"]}


@pytest.fixture(scope="module")
def ui_runs(tmp_path_factory) -> dict[str, tuple[set, dict, list[str]]]:
    """{selection name: (the selected asset keys, the finished run, its log messages)}."""
    root = tmp_path_factory.mktemp("ui_selection")
    prepare(root)
    port = free_port()
    log = root / "spine_dev.log"
    process = spine_dev(root, port, log)
    try:
        ui = Ui(port)
        nodes = {tuple(n["assetKey"]["path"]): n for n in ui.wait_until_loaded(process, log)}

        def checks(keys) -> list[dict]:
            return [c for k in keys for c in (nodes[k]["assetChecksOrError"] or {}).get("checks", [])]

        selections = {"/".join(key): {key} for key in RAW_ASSETS}
        selections["/".join(MART) + " with its upstreams"] = _upstream(nodes, MART)
        launched = {
            name: ui.launch([list(k) for k in sorted(keys)], checks(sorted(keys))) for name, keys in selections.items()
        }
        finished: dict[str, dict] = {}
        deadline = time.monotonic() + RUNS_SECONDS
        while len(finished) < len(launched) and time.monotonic() < deadline:
            for name, run_id in launched.items():
                run = ui.run(run_id)
                if name not in finished and run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    finished[name] = run
            time.sleep(3)
        assert len(finished) == len(launched), (
            f"runs still going after {RUNS_SECONDS} s: {set(launched) - set(finished)}"
        )
        return {
            name: (
                selections[name],
                finished[name],
                ui.messages(launched[name]) if finished[name]["status"] != "SUCCESS" else [],
            )
            for name in launched
        }
    finally:
        # The whole process group: spine dev, dagster dev and the webserver, daemon and code
        # server it started.
        stop_group(process)


@pytest.mark.parametrize("selection", ["/".join(key) for key in RAW_ASSETS])
def test_a_raw_asset_materializes_alone(ui_runs, selection):
    keys, run, messages = ui_runs[selection]
    assert run["status"] == "SUCCESS", "\n".join(messages[-30:])
    assert {tuple(m["assetKey"]["path"]) for m in run["assetMaterializations"]} == keys


def test_a_mart_materializes_with_its_upstreams(ui_runs):
    keys, run, messages = ui_runs["/".join(MART) + " with its upstreams"]
    assert run["status"] == "SUCCESS", "\n".join(messages[-30:])
    kinds = {key[0] for key in keys}
    assert {"stripe", "hubspot", "zendesk", "usage_events", "marts"} <= kinds
    assert {tuple(m["assetKey"]["path"]) for m in run["assetMaterializations"]} == keys


def test_loading_a_sources_tables_one_at_a_time_is_no_schema_drift(tmp_path):
    """A raw asset materialized alone, then another of the same source: the second table's first
    load sets its baseline, as a source's first load does; a table no resource declares is drift."""
    warehouse = tmp_path / "w.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="one_at_a_time",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw_things",
        pipelines_dir=str(tmp_path / "dlt"),
    )
    resources = ["accounts", "orders"]

    def load(table, rows):
        pipeline.run(rows, table_name=table)
        with duckdb.connect(str(warehouse)) as con:
            return detect_drift(con, "things_api", "raw_things", "run", declared=resources)

    assert not load("accounts", [{"id": 1}]).drifted
    assert not load("orders", [{"id": 1, "lines": [{"sku": "a"}]}]).drifted  # with its child table
    drift = load("refunds", [{"id": 1}])
    assert [(c.table, c.change) for c in drift.changes] == [("refunds", "new_table")]
    drift = load("orders", [{"id": 2, "coupon": "x", "tags": ["y"]}])
    assert [(c.table, c.column, c.change) for c in drift.changes] == [
        ("orders", "coupon", "new_column"),
        ("orders__tags", None, "new_table"),
    ]
