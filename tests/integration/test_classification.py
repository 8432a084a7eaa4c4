"""Every column classified: declared once (model ymls, raw contracts), checked (the dbt build
fails on a column without a valid classification; the raw tables a load lands are held to
their contracts), inherited (a column derived from a restricted one is restricted unless it
says why) and shown (Dagster's column schema). See privacy/classification.py."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtCliResource
from dbt_runs import AS_OF, DBT, DBT_DIR, run_dbt
from pipeline_runs import SHAPES, _add_documented, prepare

from connectors import contract
from connectors.pipelines import DATASETS, load
from data_spine.settings import settings
from orchestration.ingestion import ingestion_assets
from orchestration.transformation import dbt_models, unclassified_columns
from privacy import classification
from sample_company.vendor_api import DEMO_CREDENTIALS, VendorApiServer

EMAIL_DOMAIN = (("marts", "contacts"), "email_domain")
CREDENTIALS = {
    "stripe": {"api_key": DEMO_CREDENTIALS["stripe_api_key"]},
    "hubspot": {"token": DEMO_CREDENTIALS["hubspot_token"]},
    "zendesk": {"email": DEMO_CREDENTIALS["zendesk_email"], "api_token": DEMO_CREDENTIALS["zendesk_api_token"]},
}


def _empty_raw_schema(warehouse: Path, source: str) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f'create schema "{DATASETS[source]}"')
        for table, columns in contract.empty_tables(source):
            con.execute(f'create table "{DATASETS[source]}"."{table}" ({columns})')


def test_a_column_without_a_classification_fails_the_build_and_the_run_names_it(tmp_path):
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    staging = project / "models" / "staging" / "zendesk"
    model = staging / "stg_zendesk__organizations.sql"
    last = "deleted_at is not null as is_deleted"
    model.write_text(model.read_text().replace(last, f"{last},\n    lower(name) as name_lower"))
    yml = staging / "stg_zendesk__organizations.yml"
    declared = "      - name: organization_name\n        meta: {classification: internal}\n"
    assert declared in yml.read_text()
    yml.write_text(yml.read_text().replace(declared, declared.replace("internal", "secret")))
    warehouse = tmp_path / "warehouse.duckdb"
    _empty_raw_schema(warehouse, "zendesk")

    # As the pipeline runs dbt (dagster-dbt), so what the run reports is checked too.
    dbt = DbtCliResource(project_dir=str(project), profiles_dir=str(project), dbt_executable=DBT)
    run_vars = json.dumps({"warehouse_path": str(warehouse), "as_of_date": AS_OF})
    invocation = dbt.cli(["build", "--select", "stg_zendesk__organizations", "--vars", run_vars], raise_on_error=False)
    invocation.wait()

    assert not invocation.is_successful()
    error = str(invocation.get_error())
    assert "stg_zendesk__organizations.name_lower: not in its yml" in error, error[-2000:]
    assert "stg_zendesk__organizations.organization_name: classification secret is none of" in error, error[-2000:]
    found = unclassified_columns(error)
    assert list(found) == ["stg_zendesk__organizations"]
    assert "name_lower" in found["stg_zendesk__organizations"]
    assert "organization_name" in found["stg_zendesk__organizations"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """The project's manifest with every model's compiled SQL."""
    root = tmp_path_factory.mktemp("compiled")
    result = run_dbt(["compile"], root / "warehouse.duckdb", root / "target")
    assert result.returncode == 0, result.stdout[-3000:]
    return json.loads((root / "target" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def traced(compiled) -> classification.Lineage:
    return classification.lineage(compiled)


def test_the_project_keeps_the_inheritance_rule_and_reports_what_it_cannot_trace(compiled, traced):
    assert len(traced.upstream) > 500
    # sqlglot reads `used.feature` (a field of a struct the model unnests) as a table's column:
    # the model's columns are reported untraced, nothing stops.
    assert {relation for relation, _ in traced.untraced} <= {("marts", "feature_adoption_daily")}
    assert traced.seconds < 60
    assert classification.violations(compiled, traced) == []


def test_a_mart_column_derived_from_an_email_is_restricted_unless_it_says_why(compiled, traced):
    assert (("staging", "stg_hubspot__contacts"), "email") in traced.upstream[EMAIL_DOMAIN]
    declared = classification.load_classification(compiled)
    assert classification.effective(declared, traced)[EMAIL_DOMAIN].level == "restricted"

    contacts = copy.deepcopy(compiled["nodes"]["model.data_spine.contacts"])
    manifest = {**compiled, "nodes": {**compiled["nodes"], "model.data_spine.contacts": contacts}}
    contacts["columns"]["email_domain"]["meta"] = {"classification": "internal"}
    assert classification.effective(classification.load_classification(manifest), traced)[EMAIL_DOMAIN].level == (
        "restricted"
    )
    found = classification.violations(manifest, traced)
    assert len(found) == 1 and found[0].startswith("marts.contacts.email_domain: declared internal"), found
    assert "staging.stg_hubspot__contacts.email" in found[0]

    contacts["columns"]["email_domain"]["meta"]["classification_reason"] = "a domain, the business's"
    assert classification.effective(classification.load_classification(manifest), traced)[EMAIL_DOMAIN].level == (
        "internal"
    )
    assert classification.violations(manifest, traced) == []


def test_every_contract_column_is_classified():
    for source in contract.sources():
        for name, table in contract.contract(source).items():
            for column in table.columns.values():
                assert column.classification.problems() == [], f"{source}.{name}.{column.name}"
            for column, classified in table.other_columns.items():
                assert classified.problems() == [], f"{source}.{name}.other_columns.{column}"


def test_a_contract_with_a_value_outside_the_vocabulary_does_not_load(tmp_path, monkeypatch):
    (tmp_path / "bad.yml").write_text(
        "tables:\n  t:\n    columns:\n      a: {type: text, classification: secret, description: x}\n"
    )
    monkeypatch.setattr(contract, "FOLDER", tmp_path)
    contract.contract.cache_clear()
    try:
        with pytest.raises(ValueError, match="bad.yml: t.a: classification 'secret' is none of"):
            contract.contract("bad")
    finally:
        contract.contract.cache_clear()


@pytest.fixture(scope="module", params=SHAPES, ids=[shape.name for shape in SHAPES])
def raw_warehouse(request, tmp_path_factory) -> Path:
    """The raw tables the connectors land from the `tiny` company in a shape of the variant
    matrix, with the records the vendors document (their every field)."""
    shape = request.param
    root = tmp_path_factory.mktemp(f"raw-{shape.name}")
    prepare(root, shape.variant)
    data = root / "data"
    for name in shape.documented:
        _add_documented(data / "sources", name)
    cfg = dataclasses.replace(settings(), data_dir=data, warehouse=data / "warehouse.duckdb")
    with VendorApiServer(data / "sources") as server:
        for source, extra in CREDENTIALS.items():
            load(source, cfg, base_url=server.base_url(source), **extra)
    load("usage_events", cfg, landing_dir=data / "landing" / "usage_events")
    return cfg.warehouse


def test_every_raw_column_a_load_lands_is_classified(raw_warehouse, tmp_path):
    with duckdb.connect(str(raw_warehouse), read_only=True) as con:
        assert classification.unclassified_raw_columns(con) == []
    # A field the vendor starts sending lands as a column of its own: reported until classified.
    changed = tmp_path / "warehouse.duckdb"
    shutil.copyfile(raw_warehouse, changed)
    with duckdb.connect(str(changed)) as con:
        con.execute("alter table raw_hubspot.contacts add column favourite_colour varchar")
        assert classification.unclassified_raw_columns(con) == ["raw_hubspot.contacts.favourite_colour"]


def test_personal_columns_of_raw_modelled_and_served_tables(dbt_manifest):
    def kinds(schema: str, table: str, **kwargs) -> dict[str, tuple]:
        found = classification.personal_columns(schema, table, **kwargs)
        return {c.name: (c.personal_data, c.identifies) for c in found}

    marts = kinds("marts", "contacts")
    assert marts["email"] == ("email", None)
    assert marts["contact_key"] == ("identifier", "contact_key")
    assert marts["source_id"] == ("identifier", "hubspot_contact")
    assert "customer_id" not in marts and "source_system" not in marts
    assert kinds("serving", "contacts") == marts
    raw = kinds("raw_hubspot", "contacts")
    assert raw["id"] == ("identifier", "hubspot_contact") and raw["email"] == ("email", None)
    assert kinds("raw_stripe_staging", "customers") == kinds("raw_stripe", "customers")
    assert "phone" in kinds("raw_stripe", "customers")  # a field the contract classifies though staging reads none
    assert kinds("raw_stripe", "customers", columns=["email__v_text"])["email__v_text"] == ("email", None)
    assert kinds("raw_zendesk", "tickets")["requester_id"] == ("identifier", "zendesk_user")
    assert kinds("staging", "stg_usage_events__events")["anonymous_id"] == ("identifier", "product_user")
    assert kinds("quality", "validation_results") == {} and kinds("raw_hubspot", "_dlt_loads") == {}


def _column_tags(spec: dg.AssetSpec) -> dict[str, dict[str, str]]:
    return {c.name: dict(c.tags) for c in spec.metadata["dagster/column_schema"].columns}


def test_dagster_shows_each_columns_classification_and_each_tables_strictest():
    models = {spec.key: spec for spec in dbt_models.specs}
    contacts = models[dg.AssetKey(["marts", "contacts"])]
    tags = _column_tags(contacts)
    assert tags["email"] == {"classification": "restricted", "personal_data": "email"}
    assert tags["source_id"] == {
        "classification": "restricted",
        "personal_data": "identifier",
        "identifies": "hubspot_contact",
    }
    assert tags["contact_role"] == {"classification": "internal"}
    assert contacts.metadata["classification"] == "restricted"
    assert models[dg.AssetKey(["marts", "mrr_bridge"])].metadata["classification"] == "confidential"
    assert models[dg.AssetKey(["seeds", "free_email_domains"])].metadata["classification"] == "public"
    untagged = [
        f"{spec.key.to_user_string()}.{name}"
        for spec in models.values()
        if "dagster/column_schema" in spec.metadata
        for name, column_tags in _column_tags(spec).items()
        if "classification" not in column_tags
    ]
    assert not untagged, untagged

    raw = {spec.key: spec for assets in ingestion_assets for spec in assets.specs}
    hubspot_contacts = raw[dg.AssetKey(["hubspot", "contacts"])]
    assert _column_tags(hubspot_contacts)["email"] == {"classification": "restricted", "personal_data": "email"}
    assert _column_tags(hubspot_contacts)["_dlt_load_id"] == {"classification": "internal"}
    assert hubspot_contacts.metadata["classification"] == "restricted"
    assert raw[dg.AssetKey(["stripe", "prices"])].metadata["classification"] == "confidential"
    assert all(spec.metadata.get("classification") for spec in raw.values())
