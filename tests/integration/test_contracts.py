"""Staging is held to the raw contracts (connectors/contracts/*.yml).

dlt creates a column only for a field some record of a batch filled, so a staging model that
reads a column its source's contract does not declare breaks on the first account that never
fills it. Two guards: the compiled staging SQL, resolved column by column against the
contracts, references nothing undeclared; and the whole dbt project builds on raw schemas that
hold exactly the declared columns and no rows, the sparsest account there is.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest
import sqlglot
from dbt_runs import passed, run_dbt
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from connectors import contract
from connectors.pipelines import DATASETS


def _empty_raw_warehouse(path: Path) -> None:
    """Every declared raw table of every source, with exactly its declared columns, no rows."""
    with duckdb.connect(str(path)) as con:
        for source in contract.sources():
            schema = DATASETS[source]
            con.execute(f'create schema if not exists "{schema}"')
            for table, columns in contract.empty_tables(source):
                con.execute(f'create table "{schema}"."{table}" ({columns})')


@pytest.fixture(scope="module")
def empty_build(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    root = tmp_path_factory.mktemp("empty-raw")
    warehouse, target = root / "warehouse.duckdb", root / "target"
    _empty_raw_warehouse(warehouse)
    return run_dbt(["build"], warehouse, target), target


def test_every_source_declares_a_contract():
    assert contract.sources() == sorted(DATASETS), "one contract per source"
    for source in contract.sources():
        for name, table in contract.contract(source).items():
            assert table.columns, f"{source}.{name} declares no column"
            assert table.reference.startswith("https://"), f"{source}.{name} names the vendor reference it follows"
            undocumented = [c.name for c in table.columns.values() if not c.description]
            assert not undocumented, f"{source}.{name}: columns without a description: {undocumented}"


def test_the_whole_project_builds_on_raw_schemas_holding_only_the_declared_columns(empty_build):
    result, _ = empty_build
    assert passed(result), result.stdout[-4000:]


def test_every_dbt_unit_test_runs_and_passes_here(empty_build, dbt_manifest):
    """The pipeline's production build leaves dbt's unit tests out (they check SQL logic on
    fixed inputs, not the data): this build is where each of them runs."""
    _, target = empty_build
    results = json.loads((target / "run_results.json").read_text())["results"]
    unit_tests = {r["unique_id"]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}
    declared = set(json.loads(dbt_manifest.read_text())["unit_tests"])
    assert declared and set(unit_tests) == declared
    assert set(unit_tests.values()) == {"pass"}, unit_tests


def _raw_schema() -> dict:
    """The contracts as a sqlglot schema: {raw schema: {table: {column: type}}}."""
    return {
        DATASETS[source]: {
            name: {c.name: contract.SQL[c.data_type] for c in table.columns.values()}
            | {c: contract.SQL[t] for c, t in contract.DLT_COLUMNS.items()}
            for name, table in contract.contract(source).items()
        }
        for source in contract.sources()
    }


def _undeclared_references(sql: str, schema: dict) -> list[str]:
    """Columns of raw tables the compiled SQL reads that the contracts do not declare."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    for table in tree.find_all(exp.Table):  # the warehouse file's name is no part of the contract
        table.set("catalog", None)
    # Only the raw tables are held to a contract: other relations (refs, seeds) are left out
    # of the schema, and qualification resolves what it can.
    try:
        qualify(tree, schema=schema, dialect="duckdb", validate_qualify_columns=True, quote_identifiers=False)
    except sqlglot.errors.OptimizeError as exc:
        return [str(exc)]
    found = []
    raw = {(db, t) for db, tables in schema.items() for t in tables}
    for column in tree.find_all(exp.Column):
        table = column.table
        for source in tree.find_all(exp.Table):
            if (source.alias_or_name == table) and (source.db, source.name) in raw:
                if column.name not in schema[source.db][source.name]:
                    found.append(f"{source.db}.{source.name}.{column.name}")
    return found


def test_no_staging_model_reads_a_raw_column_its_contract_does_not_declare(empty_build):
    _, target = empty_build
    manifest = json.loads((target / "manifest.json").read_text())
    schema = _raw_schema()
    staging = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["fqn"][1] == "staging"]
    assert staging
    reads_raw = 0
    problems = {}
    for node in staging:
        sql = node.get("compiled_code")
        assert sql, f"{node['name']} was not compiled"
        sources = [s for s in node["depends_on"]["nodes"] if s.startswith("source.")]
        reads_raw += bool(sources)
        undeclared = _undeclared_references(sql, schema)
        if undeclared:
            problems[node["name"]] = undeclared
    assert reads_raw == len(staging), "every staging model reads raw tables"
    assert not problems, f"staging reads raw columns no contract declares: {problems}"


def test_the_reference_check_catches_an_undeclared_column():
    schema = _raw_schema()
    sql = 'select id, trial_start, not_a_stripe_field from "raw_stripe"."subscriptions"'
    assert _undeclared_references(sql, schema), "an undeclared raw column is reported"
    assert not _undeclared_references('select id, trial_start from "raw_stripe"."subscriptions"', schema)


def test_conform_adds_missing_columns_and_keeps_what_does_not_fit():
    import pyarrow as pa

    batch = pa.table(
        {
            "id": ["cus_1", "cus_2", "cus_3"],
            "created": ["1700000000", "17e8", "later"],  # text where Stripe documents an integer
            "metadata": pa.array([{"hubspot_company_id": 7}, None, {}]),
        }
    )
    conformed = contract.conform("stripe", "customers", batch)
    declared = contract.table("stripe", "customers")
    assert set(declared.columns) <= set(conformed.column_names)
    assert conformed["email"].null_count == 3 and conformed.schema.field("email").type == pa.string()
    assert conformed["created"].to_pylist() == [1700000000, 1700000000, None]
    assert conformed["created__v_text"].to_pylist() == [None, None, "later"]
    # An object becomes its JSON text (a batch's objects share their keys, absent ones null).
    assert conformed["metadata"].to_pylist() == ['{"hubspot_company_id":7}', None, '{"hubspot_company_id":null}']
