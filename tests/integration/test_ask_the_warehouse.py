"""`spine sql` on the served warehouse, and every example query README gives."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from click.testing import CliRunner

from command_line.main import main
from data_spine.settings import PROJECT_ROOT, settings


def readme_queries() -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("### Ask the warehouse", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def spine_sql(*args: str):
    return CliRunner().invoke(main, ["sql", *args], catch_exceptions=False)


def test_readme_has_the_questions_people_ask():
    queries = " ".join(readme_queries()).lower()
    for question in ("mrr", "churn", "churn_risk", "from customers where", "retention"):
        assert question in queries


@pytest.mark.parametrize("query", readme_queries(), ids=lambda q: q.splitlines()[0].removeprefix("-- ")[:60])
def test_every_readme_query_runs_and_answers(first_run, query):
    result = spine_sql("--format", "json", "--", query)  # `--`: the query starts with a comment
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert rows, f"no rows for:\n{query}"


def test_sql_prints_a_table_of_served_figures(first_run):
    result = spine_sql("select month, closing_mrr from mrr_bridge order by month desc limit 1")
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        month, mrr = con.execute(
            "select month, closing_mrr from serving.mrr_bridge order by month desc limit 1"
        ).fetchall()[0]
    assert "closing_mrr" in result.output and "│" in result.output
    assert str(month) in result.output and f"{mrr:.2f}" in result.output


def test_sql_is_read_only_and_says_what_went_wrong(first_run):
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        before = con.execute("select count(*) from serving.customers").fetchall()
    refused = spine_sql("delete from customers")
    assert refused.exit_code == 1 and "read-only" in refused.output
    unknown = spine_sql("select * from no_such_table")
    assert unknown.exit_code == 1 and "no_such_table" in unknown.output
    assert "Traceback" not in refused.output + unknown.output
    with duckdb.connect(str(settings().warehouse), read_only=True) as con:
        assert con.execute("select count(*) from serving.customers").fetchall() == before


def test_sql_runs_a_script_from_standard_input(first_run):
    script = "select count(*) as n from customers; select 'a;b' as text;"
    result = CliRunner().invoke(main, ["sql", "--format", "csv", "-"], input=script, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "n" and int(lines[1]) > 0 and lines[2:] == ["text", "a;b"]
