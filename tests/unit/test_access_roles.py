"""Role-scoped access to the served data (privacy/access_policy.yml, privacy/access.py): what each
role's file holds, what it refuses and why, and what the policy refuses to load.

The warehouse is built here: a `serving` schema with every served table's declared columns and
types (the marts' ymls), a dozen rows each with the same customers throughout, so the real
policy runs against the real declarations in seconds, without a pipeline run.
"""

from __future__ import annotations

import functools
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from data_spine.settings import PROJECT_ROOT, Settings
from expectations.masking import mask
from privacy.access import (
    AccessDenied,
    connect_as,
    masked_sql,
    publish_role_access,
    query_as,
    quoted,
    role_file,
)
from privacy.access_policy import (
    MARTS_DIR,
    POLICY_FILE,
    AccessPolicyError,
    ClassificationError,
    UnknownRole,
    declared_columns,
    describe,
    load_policy,
)
from privacy.keys import pseudonym

KEY = "test-privacy-key"
catalog = functools.cache(declared_columns)
CUSTOMERS = 5
ROWS = 12


def _value(dataset: str, column, i: int):
    """A plausible value of a declared column: ids shared across tables, emails and names that
    look like a person's, anything else from its type."""
    name, kind, data_type = column.name, column.personal_data, (column.data_type or "varchar").lower()
    c = i % CUSTOMERS
    ids = {
        "customer_id": f"hubspot:{10000000 + c}",
        "hubspot_company_id": str(10000000 + c),
        "linked_company_id": str(10000000 + c),
        "stripe_customer_id": f"cus_Test{c:04d}",
        "workspace_id": f"ws_{100000 + c}",
        "zendesk_organization_id": 360000000 + c,
        "organization_id": 360000000 + c,
        "customer_month_id": f"hubspot:{10000000 + c}:2026-{1 + i % 12:02d}",
        "owner_id": str(70000 + c),
    }
    if name in ids:
        return ids[name]
    if kind == "email":
        return f"company{c}.example" if name.endswith("domain") else f"person.number{i}@company{c}.example"
    if kind == "name":
        return f"Person Number{i}"
    if kind == "free_text":
        return f"Question {i} from Person Number{i}"
    if kind == "identifier":
        return 380000000 + i if data_type.startswith(("bigint", "integer")) else f"{column.identifies}:{90000 + i}"
    if data_type.startswith(("varchar", "text")):
        return {"satisfaction_score": ("good", "bad", None)[i % 3]}.get(name, f"{name}_{i % 3}")
    if data_type == "boolean":
        return i % 2 == 0
    if data_type == "date":
        return date(2026, 1 + i % 12, 1)
    if data_type.startswith("timestamp"):
        return datetime(2026, 1, 1, 8) + timedelta(hours=37 * i)
    if data_type.startswith(("double", "decimal")):
        return round(100 + 12.5 * i, 2)
    return i


def build_served_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA serving")
        for dataset, columns in catalog().items():
            cols = list(columns.values())
            ddl = ", ".join(f"{quoted(c.name)} {c.data_type or 'VARCHAR'}" for c in cols)
            con.execute(f"CREATE TABLE serving.{quoted(dataset)} ({ddl})")
            rows = CUSTOMERS if dataset == "customers" else ROWS
            con.executemany(
                f"INSERT INTO serving.{quoted(dataset)} VALUES ({', '.join('?' for _ in cols)})",
                [[_value(dataset, c, i) for c in cols] for i in range(rows)],
            )


def _settings(root: Path) -> Settings:
    return Settings(
        data_dir=root / "data",
        warehouse=root / "data" / "warehouse.duckdb",
        landing_dir=root / "landing",
        dagster_home=root / "dagster_home",
        privacy_key=KEY,
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The warehouse, each role's file built from it once, and what the build reported."""
    root = tmp_path_factory.mktemp("access")
    cfg = _settings(root)
    cfg.data_dir.mkdir(parents=True)
    build_served_warehouse(cfg.warehouse)
    report = publish_role_access(cfg.warehouse, cfg.data_dir, cfg)
    return cfg, report


def _fresh(tmp_path: Path, published) -> Settings:
    """A copy of the module's warehouse to change."""
    cfg = _settings(tmp_path)
    cfg.data_dir.mkdir(parents=True)
    shutil.copyfile(published[0].warehouse, cfg.warehouse)
    return cfg


def served(cfg: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def tables_of(cfg: Settings, role: str) -> dict[str, list[str]]:
    """The role's tables and their columns, as its file holds them."""
    with connect_as(role, cfg) as con:
        found: dict[str, list[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'serving' "
            "ORDER BY table_name, column_index"
        ).fetchall():
            found.setdefault(table, []).append(column)
        return found


def personal(dataset: str, *kinds: str) -> set[str]:
    return {c.name for c in catalog()[dataset].values() if c.personal_data and (not kinds or c.personal_data in kinds)}


def test_the_build_reports_what_each_role_received(published):
    cfg, report = published
    assert set(report) == set(load_policy().roles)
    for role, summary in report.items():
        path = Path(summary["file"])
        assert path == role_file(cfg.access_dir, role) and path.stat().st_size == summary["bytes"]
        assert summary["datasets"] and summary["seconds"] >= 0
    assert not list(cfg.access_dir.glob(".*")), "a file being built was left behind"


def test_finance_reads_revenue_but_no_contact_email(published):
    cfg, _ = published
    for table in ("mrr_bridge", "mrr_by_customer_month", "invoices", "revenue_retention"):
        got = query_as("finance", f"SELECT * FROM serving.{table} ORDER BY ALL", cfg).rows
        assert got == served(cfg, f"SELECT * FROM serving.{table} ORDER BY ALL"), table
    with pytest.raises(AccessDenied) as denied:
        query_as("finance", "SELECT customer_id, email FROM serving.contacts", cfg)
    assert str(denied.value).startswith(
        "role 'finance' may not read serving.contacts.email (hidden by privacy/access_policy.yml"
    )
    with pytest.raises(AccessDenied, match=r"serving\.customers\.primary_contact_email \(hidden"):
        query_as("finance", "SELECT c.Primary_Contact_Email FROM Customers c", cfg)
    # Names reach finance masked as every report masks them; usage and support not at all.
    names = query_as("finance", "SELECT customer_id, primary_contact_name FROM customers ORDER BY 1", cfg).rows
    expected = served(cfg, "SELECT customer_id, primary_contact_name FROM serving.customers ORDER BY 1")
    assert names == [(c, mask(n)) for c, n in expected]
    for table in ("usage_events", "ticket_metrics", "feature_adoption_daily"):
        with pytest.raises(AccessDenied, match=rf"role 'finance' may not read serving\.{table} \(not granted"):
            query_as("finance", f"SELECT count(*) FROM serving.{table}", cfg)
    with pytest.raises(AccessDenied, match=r"serving\.customers\.events_30d"):
        query_as("finance", "SELECT events_30d FROM customers", cfg)


def test_data_science_reads_only_pseudonymous_ids_and_aggregates(published):
    cfg, _ = published
    policy = load_policy()
    id_columns = {
        (dataset, column.name)
        for dataset, columns in catalog().items()
        for column in columns.values()
        if column.personal_data == "identifier"
        or column.name in policy.groups["account_ids"]
        or f"{dataset}.{column.name}" in policy.groups["account_ids"]
    }
    raw_ids = {
        str(value)
        for dataset, column in id_columns
        for (value,) in served(cfg, f"SELECT DISTINCT {quoted(column)} FROM serving.{dataset}")
        if value is not None
    }
    tables = tables_of(cfg, "data_science")
    with connect_as("data_science", cfg) as con:
        for table, columns in tables.items():
            assert not set(columns) & personal(table, "email", "name", "free_text", "phone", "address"), table
            for column in columns:
                values = {
                    str(v) for (v,) in con.execute(f"SELECT DISTINCT {quoted(column)} FROM serving.{table}").fetchall()
                }
                assert not values & raw_ids, f"{table}.{column} holds a raw id"
    # The same customer gets the same pseudonym in every table: the keyed hash of its id.
    ids = [c for (c,) in served(cfg, "SELECT customer_id FROM serving.customers ORDER BY 1")]
    pseudonyms = {c for (c,) in query_as("data_science", "SELECT customer_id FROM customers", cfg).rows}
    assert pseudonyms == {pseudonym(KEY.encode(), c) for c in ids}
    usage = {c for (c,) in query_as("data_science", "SELECT DISTINCT customer_id FROM usage_events", cfg).rows}
    assert usage <= pseudonyms
    # Revenue and usage at aggregate level only, adding up to what serving holds.
    assert query_as("data_science", "SELECT sum(events) FROM usage_events", cfg).rows == served(
        cfg, "SELECT count(*) FROM serving.usage_events"
    )
    assert query_as("data_science", "SELECT sum(mrr) FROM mrr_by_customer_month", cfg).rows == served(
        cfg, "SELECT sum(mrr) FROM serving.mrr_by_customer_month"
    )
    assert set(tables["mrr_by_customer_month"]) == {
        "month",
        "currency",
        *policy.aggregates["mrr_by_customer_month"].measures,
    }
    with pytest.raises(AccessDenied, match=r"serving\.usage_events\.user_id \(.* as an aggregate only"):
        query_as("data_science", "SELECT user_id, count(*) FROM serving.usage_events GROUP BY 1", cfg)
    with pytest.raises(AccessDenied, match=r"serving\.customers\.mrr \(hidden"):
        query_as("data_science", "SELECT mrr FROM customers", cfg)
    with pytest.raises(AccessDenied, match=r"serving\.contacts \(not granted"):
        query_as("data_science", "SELECT * FROM contacts", cfg)


def test_ai_agent_reads_the_customer_360_without_personal_data(published):
    cfg, _ = published
    tables = tables_of(cfg, "ai_agent")
    assert set(tables) >= {"customers", "usage_events", "ticket_metrics", "invoices"}
    assert tables["customers"] == [c for c in catalog()["customers"] if c not in personal("customers")]
    for table, columns in tables.items():
        assert not set(columns) & personal(table), table
    emails = {
        e
        for (e,) in served(
            cfg, "SELECT email FROM serving.contacts UNION SELECT primary_contact_email FROM serving.customers"
        )
    }
    names = {n for (n,) in served(cfg, "SELECT full_name FROM serving.contacts")}
    with connect_as("ai_agent", cfg) as con:
        for table, columns in tables.items():
            for column in columns:
                values = {
                    v for (v,) in con.execute(f"SELECT DISTINCT {quoted(column)} FROM serving.{table}").fetchall()
                }
                assert not values & (emails | names), f"{table}.{column}"
    for table in ("contacts", "customer_crosswalk"):
        with pytest.raises(AccessDenied, match=rf"role 'ai_agent' may not read serving\.{table} \(not granted"):
            query_as("ai_agent", f"SELECT * FROM {table}", cfg)
    with pytest.raises(AccessDenied, match=r"serving\.ticket_metrics\.requester_id \(hidden"):
        query_as("ai_agent", "SELECT requester_id FROM ticket_metrics", cfg)


def test_executive_reads_everything_as_served(published):
    """Everything row for row, but the events: by customer and week (the policy says why)."""
    cfg, _ = published
    datasets = catalog()
    assert set(tables_of(cfg, "executive")) == set(datasets)
    events = query_as("executive", "SELECT sum(events) FROM usage_events", cfg).rows
    assert events == served(cfg, "SELECT count(*) FROM serving.usage_events")
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{cfg.warehouse}' AS warehouse (READ_ONLY)")
        con.execute(f"ATTACH '{role_file(cfg.access_dir, 'executive')}' AS executive (READ_ONLY)")
        for table in set(datasets) - {"usage_events"}:
            for a, b in (("warehouse", "executive"), ("executive", "warehouse")):
                rows_of = f"SELECT * FROM {a}.serving.{table} EXCEPT ALL SELECT * FROM {b}.serving.{table}"
                differing = con.execute(f"SELECT count(*) FROM ({rows_of})").fetchone()[0]
                assert differing == 0, table


def test_sales_reads_accounts_people_and_arr_but_no_usage_or_billing(published):
    cfg, _ = published
    assert query_as("sales", "SELECT contact_key, email FROM contacts ORDER BY 1", cfg).rows == served(
        cfg, "SELECT contact_key, email FROM serving.contacts ORDER BY 1"
    )
    assert query_as(
        "sales", "SELECT customer_id, arr, primary_contact_email FROM customers ORDER BY 1", cfg
    ).rows == served(cfg, "SELECT customer_id, arr, primary_contact_email FROM serving.customers ORDER BY 1")
    for column in ("lifetime_revenue", "outstanding_balance", "events_30d", "active_users_30d"):
        with pytest.raises(AccessDenied, match=rf"role 'sales' may not read serving\.customers\.{column} \(hidden"):
            query_as("sales", f"SELECT customer_id, {column} FROM customers", cfg)
    with pytest.raises(AccessDenied, match=r"serving\.ticket_metrics\.subject \(hidden"):
        query_as("sales", "SELECT subject FROM ticket_metrics", cfg)
    for table in ("invoices", "usage_events", "mrr_by_customer_month"):
        with pytest.raises(AccessDenied, match=rf"serving\.{table} \(not granted"):
            query_as("sales", f"SELECT * FROM {table}", cfg)


def test_customer_success_reads_every_ticket_and_usage_by_customer(published):
    cfg, _ = published
    assert query_as("customer_success", "SELECT ticket_id, subject FROM ticket_metrics ORDER BY 1", cfg).rows == served(
        cfg, "SELECT ticket_id, subject FROM serving.ticket_metrics ORDER BY 1"
    )
    by_customer = query_as(
        "customer_success", "SELECT customer_id, sum(events) FROM usage_events GROUP BY 1 ORDER BY 1", cfg
    ).rows
    assert by_customer == served(cfg, "SELECT customer_id, count(*) FROM serving.usage_events GROUP BY 1 ORDER BY 1")
    with pytest.raises(AccessDenied, match=r"serving\.usage_events\.event_id \(.* aggregate only"):
        query_as("customer_success", "SELECT event_id FROM usage_events", cfg)
    for table in ("invoices", "mrr_bridge"):
        with pytest.raises(AccessDenied, match=rf"serving\.{table} \(not granted"):
            query_as("customer_success", f"SELECT * FROM {table}", cfg)


def test_every_forbidden_read_fails_naming_what_and_why(published):
    cfg, _ = published
    policy = load_policy()
    for role in policy.roles.values():
        for dataset in catalog():
            grant = role.grants.get(dataset)
            if grant is None:
                with pytest.raises(AccessDenied, match=rf"^role '{role.name}' may not read serving\.{dataset} \("):
                    query_as(role.name, f"SELECT * FROM serving.{dataset}", cfg)
                continue
            outputs = grant.output_columns()
            for column in catalog()[dataset]:
                if column in outputs:
                    continue
                with pytest.raises(
                    AccessDenied,
                    match=rf"^role '{role.name}' may not read serving\.{dataset}\.{column} \(.*access_policy\.yml",
                ):
                    query_as(role.name, f"SELECT t.{quoted(column)} FROM serving.{dataset} t", cfg)
    # A mistake that is no access matter stays DuckDB's.
    with pytest.raises(duckdb.BinderException):
        query_as("executive", "SELECT no_such_column FROM customers", cfg)


def test_a_role_file_is_read_only_and_reads_nothing_else(published):
    cfg, _ = published
    with connect_as("ai_agent", cfg) as con:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE serving.notes (x INTEGER)")
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            con.execute(f"ATTACH '{cfg.warehouse}' AS warehouse (READ_ONLY)")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    with pytest.raises(
        UnknownRole, match=r"unknown role 'marketing': the roles of privacy/access_policy\.yml are sales,"
    ):
        connect_as("marketing", cfg)


def test_pseudonyms_and_masks_are_computed_as_the_python_functions_compute_them(published):
    cfg, _ = published
    values = ["jane.doe@example.com", "Jane Doe", "", "@example.com", "a@b@c.example", "Élise Brontë", None]
    with duckdb.connect() as con:
        got = [con.execute(f"SELECT {masked_sql('CAST($v AS VARCHAR)')}", {"v": v}).fetchone()[0] for v in values]
    assert got == [None if v is None else mask(v) for v in values]
    # The warehouse's views read the key from the session: it is in no view, and without it
    # they refuse rather than hash without a secret.
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        definitions = [
            sql
            for (sql,) in con.execute(
                "SELECT sql FROM duckdb_views() WHERE starts_with(schema_name, 'access_')"
            ).fetchall()
        ]
        assert definitions and not any(KEY in sql for sql in definitions)
        with pytest.raises(duckdb.Error, match="need the privacy key"):
            con.execute("SELECT customer_id FROM access_data_science.customers").fetchall()
        # Given the key, the views show what the role's file holds (its aggregates are computed
        # once for every role, and pseudonymised afterwards).
        con.execute("SET VARIABLE spine_privacy_key = ?", [KEY])
        for role, table in (
            ("data_science", "usage_events"),
            ("data_science", "customers"),
            ("ai_agent", "usage_events"),
        ):
            view = con.execute(f"SELECT * FROM access_{role}.{table} ORDER BY ALL").fetchall()
            assert query_as(role, f"SELECT * FROM {table} ORDER BY ALL", cfg).rows == view, (role, table)


def _policy_variant(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(POLICY_FILE.read_text())
    change(raw)
    path = tmp_path / "access_policy.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _set(path: str, value):
    def change(raw):
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (
            _set("roles/finance/datasets/payroll", "read"),
            r"roles\.finance\.datasets\.payroll: unknown dataset 'payroll'",
        ),
        (
            _set("roles/finance/datasets/customers", "rows"),
            r"roles\.finance\.datasets\.customers: unknown access 'rows'",
        ),
        (_set("roles/finance/personal_data/email", "redacted"), r"personal_data\.email: unknown mode 'redacted'"),
        (_set("roles/finance/classification/secret", "read"), r"roles\.finance\.classification: unknown key 'secret'"),
        (
            _set("roles/finance/columns/salary", "hidden"),
            r"roles\.finance\.columns\.salary: neither a group nor a column",
        ),
        (
            _set("roles/sales/datasets/contacts/columns/mrr", "read"),
            r"roles\.sales\.datasets\.contacts\.columns\.mrr: neither a group nor a column of dataset contacts",
        ),
        (_set("roles/Finance", {"datasets": {"customers": "read"}}), r"roles\.Finance: a role name is lower-case"),
        (_set("roles/finance/datasets/customer_crosswalk", "aggregate_only"), r"declares no aggregate"),
        (_set("roles/sales/columns/customers.arr", "masked"), r"customers\.arr would be masked; only text is"),
        (_set("roles/sales/classification", "read"), None),
        (_set("role", {}), r"the policy: unknown key 'role'"),
        (
            _set("groups/billing", ["customers.nope"]),
            r"groups\.billing: no served dataset has a column 'customers\.nope'",
        ),
        (
            _set("aggregates/usage_events/dimensions", ["customer_id", "user_id"]),
            r"aggregates\.usage_events\.dimensions\[1\]: usage_events\.user_id holds personal data",
        ),
        (_set("roles/finance/datasets/contacts", {"access": "read", "personal_data": "hidden", "columns": {}}), None),
        (
            _set("roles/finance/datasets/revenue_retention", {"access": "read", "classification": "hidden"}),
            r"roles\.finance\.datasets\.revenue_retention: grants revenue_retention but no column of it",
        ),
    ],
)
def test_an_invalid_policy_is_refused_saying_where(tmp_path, change, message):
    path = _policy_variant(tmp_path, change)
    if message is None:  # valid variants load
        assert load_policy(path).roles
        return
    with pytest.raises(AccessPolicyError, match=message) as refused:
        load_policy(path)
    assert str(refused.value).startswith(f"{path} is not a valid access policy:")


def test_an_unclassified_served_column_is_refused(tmp_path, published):
    cfg = _fresh(tmp_path, published)
    assert publish_role_access(cfg.warehouse, cfg.data_dir, cfg)
    before = {p.name: p.stat().st_mtime_ns for p in cfg.access_dir.glob("*.duckdb")}
    with duckdb.connect(str(cfg.warehouse)) as con:
        con.execute("ALTER TABLE serving.customers ADD COLUMN nickname VARCHAR")
    with pytest.raises(
        ClassificationError, match=r"serving\.customers\.nickname \(not in dbt_project/models/marts/customers\.yml\)"
    ):
        publish_role_access(cfg.warehouse, cfg.data_dir, cfg)
    # Declared, but without a classification: refused as well.
    marts = tmp_path / "marts"
    shutil.copytree(MARTS_DIR, marts)
    yml = marts / "customers.yml"
    raw = yaml.safe_load(yml.read_text())
    for column in raw["models"][0]["columns"]:
        if column["name"] == "industry":
            column.pop("meta")
    raw["models"][0]["columns"].append(
        {"name": "nickname", "meta": {"classification": "internal"}, "data_type": "varchar"}
    )
    yml.write_text(yaml.safe_dump(raw, sort_keys=False))
    policy = load_policy(catalog=declared_columns(marts))
    with pytest.raises(ClassificationError, match=r"serving\.customers\.industry \(no meta classification") as refused:
        publish_role_access(cfg.warehouse, cfg.data_dir, cfg, policy)
    assert "nickname" not in str(refused.value)
    assert {p.name: p.stat().st_mtime_ns for p in cfg.access_dir.glob("*.duckdb")} == before, (
        "a refused build changed a file"
    )
    # A kind the policy cannot read is refused where it is declared.
    raw["models"][0]["columns"][-1]["meta"] = {"classification": "secret"}
    yml.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ClassificationError, match=r"customers\.yml: nickname: classification 'secret' is none of"):
        declared_columns(marts)


def test_a_rebuild_replaces_each_file_whole_and_drops_roles_no_longer_in_the_policy(tmp_path, published):
    cfg = _fresh(tmp_path, published)
    publish_role_access(cfg.warehouse, cfg.data_dir, cfg)
    reader = connect_as("sales", cfg)
    old = reader.execute("SELECT count(*) FROM customers").fetchone()[0]
    with duckdb.connect(str(cfg.warehouse)) as con:
        con.execute("DELETE FROM serving.customers WHERE customer_id = 'hubspot:10000000'")
    policy_path = _policy_variant(tmp_path, lambda raw: raw["roles"].pop("executive"))
    report = publish_role_access(cfg.warehouse, cfg.data_dir, cfg, load_policy(policy_path))
    assert "executive" not in report
    # A reader that opened the file before keeps reading the version it opened.
    assert reader.execute("SELECT count(*) FROM customers").fetchone()[0] == old
    reader.close()
    assert query_as("sales", "SELECT count(*) FROM customers", cfg).rows == [(old - 1,)]
    assert not role_file(cfg.access_dir, "executive").exists()
    assert sorted(p.name for p in cfg.access_dir.iterdir()) == sorted(f"{r}.duckdb" for r in report)
    schemas = {s for (s,) in served(cfg, "SELECT schema_name FROM duckdb_schemas() WHERE schema_name LIKE 'access_%'")}
    assert schemas == {f"access_{r}" for r in report}


def test_the_readme_lists_what_the_policy_grants():
    readme = (PROJECT_ROOT / "privacy" / "README.md").read_text()
    assert describe(load_policy()) in readme, (
        "privacy/README.md no longer matches the policy: paste the output of "
        "`.venv/bin/python -m privacy.access_policy` between its policy markers"
    )
