"""The dbt docs site: it opens on the project's overview, every model and seed has an owner,
every link to a report stays in the reports folder, and `spine docs` serves it."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin

import dagster as dg
import pytest
from click.testing import CliRunner
from dagster_dbt import get_asset_key_for_model

from command_line.docs_site import SITE, make_server, site_url
from command_line.main import main
from expectations.suites import SUITES
from orchestration.definitions import defs
from orchestration.transformation import dbt_models

PROJECT = "data_spine"
# A link of the docs site's own pages: `#!/model/model.data_spine.customers`.
SITE_PAGE = re.compile(r"\]\(#!/(\w+)/([\w.]+)\)")
# A Markdown link to anything else: a report beside the site.
OTHER_LINK = re.compile(r"\]\(([^)#][^)]*)\)")
# Dagster takes an owner's email as it is or `team:<name>`.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")


@pytest.fixture(scope="module")
def manifest(dbt_manifest: Path) -> dict:
    return json.loads(dbt_manifest.read_text())


def _overview(manifest: dict) -> str:
    return manifest["docs"][f"doc.{PROJECT}.__overview__"]["block_contents"]


def _resolved_from_the_site(link: str) -> PurePosixPath | None:
    """Where a relative link of the site lands in the reports folder (None: outside it)."""
    parts: list[str] = list(SITE.parent.parts)
    for part in PurePosixPath(link).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts)


def test_the_site_opens_on_the_project_overview(manifest):
    overview = _overview(manifest)
    assert overview.lstrip().startswith("# Data Spine")
    # Every page of the site it links exists: the marts, the definitions' models, the exposures.
    pages = SITE_PAGE.findall(overview)
    known = {**manifest["nodes"], **manifest["exposures"]}
    assert [(kind, uid) for kind, uid in pages if uid not in known or known[uid]["resource_type"] != kind] == []
    marts = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["fqn"][1] == "marts"}
    assert {uid.split(".")[-1] for kind, uid in pages if kind == "model"} >= marts
    assert {uid for kind, uid in pages if kind == "exposure"} == set(manifest["exposures"])
    # The reports it links are beside the site, in the reports folder.
    reports = [_resolved_from_the_site(link) for link in OTHER_LINK.findall(overview)]
    assert reports and None not in reports, reports
    assert {str(r) for r in reports} >= {"scorecard.html", "revenue.html"}


def test_every_exposure_links_a_report_beside_the_site(manifest):
    for uid, exposure in manifest["exposures"].items():
        url = exposure["url"]
        # A relative link: an absolute path or a file:// URL would only open on the machine
        # that wrote it, and a path relative to the repository resolves against the site.
        assert url and "://" not in url and not url.startswith("/"), (uid, url)
        landing = _resolved_from_the_site(url)
        assert landing is not None and landing.suffix == ".html", (uid, url)
        assert exposure["owner"].get("name") and EMAIL.match(exposure["owner"].get("email") or ""), uid
        assert exposure["depends_on"]["nodes"], uid


def test_every_model_and_seed_has_a_group_with_an_owner(manifest):
    groups = {g["name"]: g for g in manifest["groups"].values()}
    for group in groups.values():
        assert group["owner"].get("name") and EMAIL.match(group["owner"].get("email") or ""), group["name"]
        assert group["description"].strip(), group["name"]
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed")]
    assert [n["unique_id"] for n in nodes if n.get("group") not in groups] == []
    assert [n["unique_id"] for n in nodes if n["resource_type"] == "model" and not n["description"].strip()] == []


def test_a_domain_has_one_owner_on_the_site_and_in_its_quality_checks(manifest):
    owner_of = {g["name"]: g["owner"]["name"] for g in manifest["groups"].values()}
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    for entity, suite in SUITES.items():
        for table in suite.publishes:
            assert owner_of[models[table]["group"]] == suite.owner, (entity, table)


def test_the_dagster_assets_of_dbt_models_are_owned_by_their_group(manifest):
    email_of = {g["name"]: g["owner"]["email"] for g in manifest["groups"].values()}
    graph = defs.resolve_asset_graph()
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            key = get_asset_key_for_model([dbt_models], node["name"])
            assert list(graph.get(key).owners) == [email_of[node["group"]]], node["name"]
    # Dagster's own groups stay the layers, whatever the dbt group.
    assert graph.get(dg.AssetKey(["marts", "customers"])).group_name == "marts"


def _fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_the_server_serves_the_site_and_the_reports_beside_it(tmp_path):
    (tmp_path / SITE).parent.mkdir(parents=True)
    (tmp_path / SITE).write_text("<title>site</title>")
    (tmp_path / "scorecard.html").write_text("<title>scorecard</title>")
    with make_server(tmp_path, 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = site_url(server)
            assert url.endswith("/dbt_docs/index.html")
            assert _fetch(url) == (200, "<title>site</title>")
            # A relative link of the site, as the browser resolves it.
            assert _fetch(urljoin(url, "../scorecard.html")) == (200, "<title>scorecard</title>")
        finally:
            server.shutdown()
            thread.join(timeout=10)


def test_spine_docs_without_a_site_says_to_run_first(set_env, tmp_path):
    set_env(SPINE_DATA_DIR=str(tmp_path))
    result = CliRunner().invoke(main, ["docs", "--port", "0"])
    assert result.exit_code == 1
    assert "run `spine run` first" in result.output and len(result.output.strip().splitlines()) == 1
