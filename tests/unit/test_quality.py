"""The quality layer's rules: how suites are declared, scored, banded and masked.

What the suites find on the real sample company is in test_quality_acceptance.py; the GX
adapter in test_gx_duckdb.py; publishing in test_wap.py; alerts in test_alerts.py.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from connectors.pipelines import DATASETS
from expectations import DIMENSIONS, SUITES
from expectations.freshness_windows import MARTS, SOURCES
from expectations.masking import mask, mask_email
from expectations.suite import DEFAULT_ACTION, DEFAULT_CAUSES, check
from quality.scorecard import band, render_markdown, score_results


def _marts_in_dbt() -> set[str]:
    from orchestration.transformation import MARTS as DBT_MARTS

    return set(DBT_MARTS)


def test_suites_are_well_formed():
    for suite in SUITES.values():
        assert suite.owner and suite.description and suite.publishes
        assert {"completeness", "validity", "uniqueness", "timeliness"} <= set(suite.dimensions), suite.entity
        for c in suite.checks:
            assert c.owner and c.description and c.likely_causes and c.suggested_action, c.name
            assert re.fullmatch(r"[a-z][a-z0-9_]*", c.name), c.name
            assert c.expectation.startswith("expect_"), c.name
        # Every suite can stop its publication: it has blocking checks.
        assert any(c.severity == "blocking" for c in suite.checks), suite.entity
    assert {c.dimension for s in SUITES.values() for c in s.checks} == set(DIMENSIONS)
    assert set(DEFAULT_CAUSES) == set(DEFAULT_ACTION) == set(DIMENSIONS)


def test_every_mart_is_published_by_exactly_one_entity_and_has_a_freshness_window():
    published = [t for s in SUITES.values() for t in s.publishes]
    assert sorted(published) == sorted(set(published)), "a mart is published by two entities"
    assert set(published) == _marts_in_dbt(), "every mart is audited and served, and only marts"
    assert set(MARTS) == _marts_in_dbt()
    for name, window in MARTS.items():
        assert window.warn < window.fail and SUITES[window.entity].publishes.count(name) == 1, name


# The dbt data tests a Great Expectations check can stand for: the same rule on the same column.
_SAME_RULE = {"expect_column_values_to_not_be_null": "not_null", "expect_column_values_to_be_in_set": "accepted_values"}


def test_no_mart_rule_is_checked_twice(dbt_manifest):
    """A rule is checked once per build: a mart column's not-null its enforced contract
    guarantees, or a presence or value-set rule its entity's suite checks before publication,
    is not a dbt data test as well (each costs a query over the whole table every run). Key
    uniqueness stays a dbt test: it stops the models built on a duplicated key in the build."""
    nodes = json.loads(dbt_manifest.read_text())["nodes"].values()
    enforced = {
        (n["name"], column, c["type"])
        for n in nodes
        if n["resource_type"] == "model" and n["config"].get("contract", {}).get("enforced")
        for column, spec in n["columns"].items()
        for c in spec.get("constraints", [])
    }
    audited = {
        (batch.name, c.kwargs["column"], _SAME_RULE[c.expectation]): sorted(c.kwargs.get("value_set") or [])
        for suite in SUITES.values()
        for batch in suite.batches
        for c in batch.checks
        if c.expectation in _SAME_RULE and not {"row_condition", "mostly"} & set(c.kwargs)
    }
    twice = []
    for n in nodes:
        rule = (n.get("test_metadata") or {}).get("name")
        if n["resource_type"] != "test" or rule not in ("not_null", "accepted_values"):
            continue
        models = [d.split(".")[-1] for d in n["depends_on"]["nodes"] if d.startswith("model.")]
        if not models:  # a seed's
            continue
        key = (models[0], n.get("column_name"), rule)
        values = sorted(n["test_metadata"]["kwargs"].get("values") or [])
        if (rule == "not_null" and key in enforced) or audited.get(key, None) == values:
            twice.append(n["name"])
    assert not twice, f"dbt tests that repeat a contract constraint or a suite check: {sorted(twice)}"


def test_single_column_rules_of_mart_tables_are_constraints(dbt_manifest):
    """On a mart table with an enforced contract, not-null or a bound on one column (`mrr >= 0`)
    is a constraint DuckDB checks while it writes the table (a failing row fails the model and
    the last good table stays), not a data test: each test is one more query and one more
    Dagster check in every run. Incremental marts keep theirs as tests of the rows a run wrote."""
    nodes = json.loads(dbt_manifest.read_text())["nodes"]
    tables = {
        n["unique_id"]
        for n in nodes.values()
        if n["resource_type"] == "model"
        and n["fqn"][1:2] == ["marts"]
        and n["config"]["materialized"] == "table"
        and n["config"].get("contract", {}).get("enforced")
    }
    as_tests = []
    for n in nodes.values():
        meta = n.get("test_metadata") or {}
        column = n.get("column_name")
        if n["resource_type"] != "test" or not column or not set(n["depends_on"]["nodes"]) & tables:
            continue
        expression = meta.get("kwargs", {}).get("expression", "")
        bound = re.fullmatch(rf"\s*{re.escape(column)}\s*(>=|>|<=|<)\s*-?[\d.]+\s*", expression)
        if (meta.get("name") == "not_null" or bound) and n["config"].get("severity", "ERROR").upper() == "ERROR":
            as_tests.append(n["name"])
    assert tables and not as_tests, f"single-column rules of mart tables written as data tests: {sorted(as_tests)}"


def test_every_source_has_a_window_judged_by_some_suite():
    assert set(SOURCES) == set(DATASETS)
    for window in SOURCES.values():
        assert window.warn < window.fail and window.relation and window.entity in SUITES
        checks = {c.name for c in SUITES[window.entity].checks}
        assert f"source_{window.name}_fresh" in checks


def test_freshness_states():
    window = SOURCES["usage_events"]  # warn after 6 h, fail after 26 h
    assert [window.state(a) for a in (0.5, 6.0, 6.1, 26.0, 26.5, None)] == ["ok", "ok", "warn", "warn", "fail", "fail"]


def test_a_check_must_name_a_known_dimension_and_severity():
    with pytest.raises(ValueError, match="dimension"):
        check("x", "beauty", "blocking", "o", "expect_x", "d")
    with pytest.raises(ValueError, match="severity"):
        check("x", "validity", "fatal", "o", "expect_x", "d")


@pytest.mark.parametrize(
    ("score", "expected"),
    [(100, "green"), (95, "green"), (94.99, "yellow"), (92, "yellow"), (90, "yellow"), (89.99, "red"), (0, "red")],
)
def test_bands(score, expected):
    assert band(score) == expected


def _row(dimension, unexpected, elements=100, success=None, entity="customer", severity="warning"):
    return {
        "run_id": "r",
        "validated_at": datetime(2025, 6, 15, 6),
        "as_of": datetime(2025, 6, 15),
        "entity": entity,
        "table_name": "customers",
        "check_name": f"{dimension}_{unexpected}_{elements}",
        "dimension": dimension,
        "expectation": "expect_x",
        "column_name": "c",
        "severity": severity,
        "description": "d",
        "owner": "o",
        "element_count": elements,
        "unexpected_count": unexpected,
        "sample_unexpected": "[]",
        "observed_value": None,
        "error": None,
        "success": unexpected == 0 if success is None else success,
    }


def test_scores_are_means_banded_after_rounding():
    card = score_results(
        [
            _row("validity", 8),
            _row("completeness", 0),
            _row("completeness", 0, elements=0),
            _row("accuracy", 0, elements=0, success=False),
            _row("uniqueness", 2, severity="blocking"),
        ],
    )["entities"]["customer"]
    assert card["dimensions"]["validity"] == {"score": 92.0, "band": "yellow", "checks": 1, "failed": 1}
    assert card["dimensions"]["completeness"]["score"] == 100.0  # empty and passed counts as 100
    assert card["dimensions"]["accuracy"]["score"] == 0.0  # could not run: counts as 0
    assert card["overall"] == {"score": round((92 + 100 + 0 + 98) / 4, 1), "band": "red"}
    assert card["checks"] == {"total": 5, "failed": 3, "blocking_failed": 1}
    # Blocking first, then the lowest score first.
    assert [c["check"] for c in card["failing_checks"]] == ["uniqueness_2_100", "accuracy_0_0", "validity_8_100"]


def test_a_check_of_the_rows_written_last_says_so():
    sliced = {**_row("validity", 3, elements=50, entity="usage_event"), "rows_checked": "written last"}
    card = score_results([sliced, _row("completeness", 2, entity="usage_event")])
    failing = {c["check"]: c for c in card["entities"]["usage_event"]["failing_checks"]}
    # Rows of an older release carry no rows_checked: they covered every row.
    assert (failing["validity_3_50"]["rows_checked"], failing["completeness_2_100"]["rows_checked"]) == (
        "written last",
        "all",
    )
    digest = render_markdown(card)
    assert "3 of 50 rows written last" in digest and "2 of 100 (" in digest


def test_scorecard_overall_is_the_mean_of_entities():
    sc = score_results([_row("validity", 10), _row("validity", 0, entity="revenue")])
    assert sc["entities"]["customer"]["overall"]["score"] == 90.0
    assert sc["overall"] == {"score": 95.0, "band": "green"}


def test_personal_data_is_masked():
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask("jane.doe@@example.com") == "j***@@example.com"
    assert mask("Jane Doe") == "J***"
    assert mask(42) == 42


def test_scorecard_schema_is_a_valid_json_schema():
    import jsonschema

    from quality.scorecard import SCHEMA

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))
