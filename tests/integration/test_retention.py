"""Retention on the `tiny` company after a real `spine run`: `retention_job` (as `spine privacy
retention` starts it) with the policy's clocks shortened, so that some churned customers have
expired (churned more than 90 days before the as-of date) and some have not, and product users
unseen for 60 days have expired too. Their people are anonymised everywhere and verified gone,
every row and aggregate stays, everyone else is untouched; a second run changes nothing; a
record its source sends again is anonymised again, also by a run that had to finish what a
stopped one began."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import duckdb
import pytest
from pipeline_runs import AS_OF, copy_of, spine_env, warehouse_digest

from data_spine.settings import PROJECT_ROOT, Settings
from privacy import erasure, retention

pytestmark = pytest.mark.integration

CHURN_DAYS = 90
INACTIVE_DAYS = 60
POLICY = f"""
retention:
  - name: churned_customer_people
    covers: [crm_contacts, support_users, product_users, billing_contacts]
    after: churn
    keep_days: {CHURN_DAYS}
    action: anonymise
  - name: inactive_product_users
    covers: [product_users]
    after: last_event
    keep_days: {INACTIVE_DAYS}
    action: anonymise
"""
AGGREGATES = (
    "serving.mrr_bridge",
    "marts.mrr_bridge",
    "marts.mrr_by_customer_month",
    "marts.revenue_movements",
    "marts.revenue_retention",
    "marts.feature_adoption_daily",
    "marts.support_backlog_daily",
    "marts.invoices",
)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, *params) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def _people(con: duckdb.DuckDBPyConnection, customers: list[str]) -> dict[str, set[str]]:
    """Emails and ids of the customers' people, found the plain way: by each customer's main
    company, organization, workspace and Stripe customer."""
    if not customers:
        return {"emails": set(), "contacts": set(), "users": set(), "product": set()}
    marks = ", ".join("?" * len(customers))
    of = f"SELECT {{}} FROM marts.customers WHERE customer_id IN ({marks})"
    contacts = _rows(
        con,
        f"SELECT id, lower(email) FROM raw_hubspot.contacts "
        f"WHERE associatedcompanyid IN ({of.format('hubspot_company_id')})",
        *customers,
    )
    users = _rows(
        con,
        f"SELECT CAST(id AS VARCHAR), lower(email) FROM raw_zendesk.users "
        f"WHERE organization_id IN ({of.format('zendesk_organization_id')})",
        *customers,
    )
    product = _rows(
        con,
        f"SELECT DISTINCT user_id FROM raw_usage_events.events WHERE account_id IN ({of.format('workspace_id')})",
        *customers,
    )
    billing = _rows(
        con,
        f"SELECT lower(email) FROM raw_stripe.customers WHERE id IN ({of.format('stripe_customer_id')})",
        *customers,
    )
    return {
        "emails": {e for _, e in contacts + users if e} | {e for (e,) in billing if e},
        "contacts": {i for i, _ in contacts},
        "users": {i for i, _ in users},
        "product": {i for (i,) in product if i},
    }


def _row_hashes(con: duckdb.DuckDBPyConnection, table: str, column: str, values: set[str]) -> set[int]:
    if not values:
        return set()
    marks = ", ".join("?" * len(values))
    return {
        h
        for (h,) in _rows(
            con, f"SELECT hash(t) FROM {table} t WHERE CAST({column} AS VARCHAR) IN ({marks})", *sorted(values)
        )
    }


@dataclasses.dataclass
class Snapshot:
    digest: dict[str, tuple[int, int]]
    warehouse: tuple[int, int]  # inode, mtime
    landing: dict[str, int]  # file -> mtime


def _snapshot(cfg: Settings) -> Snapshot:
    stat = cfg.warehouse.stat()
    return Snapshot(
        warehouse_digest(cfg.warehouse),
        (stat.st_ino, stat.st_mtime_ns),
        {p.name: p.stat().st_mtime_ns for p in cfg.landing_dir.iterdir()},
    )


@pytest.fixture(scope="module")
def company(tmp_path_factory, clean_tiny) -> tuple[Path, Settings, Path]:
    root = copy_of(clean_tiny, tmp_path_factory.mktemp("retention"))
    policy = root / "retention.yml"
    policy.write_text(POLICY)
    return root, Settings.from_env(spine_env(root)), policy


@pytest.fixture(scope="module")
def applied(company) -> dict:
    """What the warehouse held, `retention_job`'s outcome, and what it holds after."""
    root, cfg, policy = company
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        churned = _rows(
            con,
            "SELECT c.customer_id, last_day(max(m.month)) FROM marts.customers c JOIN marts.revenue_movements m "
            "USING (customer_id) WHERE c.status = 'churned' AND m.movement = 'churn' GROUP BY 1",
        )
        expired = sorted(c for c, on in churned if on + timedelta(days=CHURN_DAYS) < AS_OF)
        kept = sorted(c for (c,) in _rows(con, "SELECT customer_id FROM marts.customers") if c not in expired)
        cutoff = datetime.combine(AS_OF - timedelta(days=INACTIVE_DAYS), time(), UTC)
        seen = "max(greatest(timestamp, coalesce(received_at, timestamp)))"
        inactive = {
            u
            for (u,) in _rows(con, f"SELECT user_id FROM raw_usage_events.events GROUP BY 1 HAVING {seen} < ?", cutoff)
        }
        # The declared 7-year clock, at the day before and the day the first churn expires.
        first_churn = min(on for _, on in churned)
        seven_years = [r for r in retention.load_policy() if r.after == "churn"]
        boundary = {
            days: retention.describe(retention.expired(con, seven_years, first_churn + timedelta(days=days)))
            for days in (2557, 2558)
        }
        declared = retention.expired(con, retention.load_policy(), AS_OF)
        gone, others = _people(con, expired), _people(con, kept)
        untouched = {
            "contacts": _row_hashes(con, "raw_hubspot.contacts", "id", others["contacts"]),
            "users": _row_hashes(con, "raw_zendesk.users", "id", others["users"]),
            "events": _row_hashes(con, "raw_usage_events.events", "user_id", others["product"] - inactive),
        }
        contacts_by_customer = _rows(
            con, "SELECT customer_id, count(*) FROM marts.contacts GROUP BY 1 ORDER BY 1 NULLS FIRST"
        )
        weekly_users = _rows(
            con,
            "SELECT customer_id, date_trunc('week', occurred_at), count(DISTINCT user_id) FROM marts.usage_events "
            "GROUP BY ALL ORDER BY ALL",
        )
        resend = _rows(
            con,
            "SELECT * FROM raw_hubspot.contacts WHERE id = ?",
            min(gone["contacts"]),
        )[0]
    before = _snapshot(cfg)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "command_line.main",
            "privacy",
            "retention",
            "--as-of",
            AS_OF.isoformat(),
            "--policy",
            str(policy),
            "--json",
        ],
        cwd=PROJECT_ROOT,
        env={**spine_env(root), "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["success"], result

    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        after_contacts = _rows(
            con, "SELECT customer_id, count(*) FROM marts.contacts GROUP BY 1 ORDER BY 1 NULLS FIRST"
        )
        after_weekly_users = _rows(
            con,
            "SELECT customer_id, date_trunc('week', occurred_at), count(DISTINCT user_id) FROM marts.usage_events "
            "GROUP BY ALL ORDER BY ALL",
        )
        still = {
            "contacts": _row_hashes(con, "raw_hubspot.contacts", "id", others["contacts"]),
            "users": _row_hashes(con, "raw_zendesk.users", "id", others["users"]),
            "events": _row_hashes(con, "raw_usage_events.events", "user_id", others["product"] - inactive),
        }
    return {
        "expired": expired,
        "kept": kept,
        "gone": gone,
        "others": others,
        "inactive": inactive,
        "boundary": boundary,
        "declared": declared,
        "untouched": untouched,
        "still": still,
        "contacts": (contacts_by_customer, after_contacts),
        "weekly_users": (weekly_users, after_weekly_users),
        "resend": resend,
        "before": before,
        "after": _snapshot(cfg),
        "outcome": result["outcome"],
        "stdout": done.stdout + done.stderr,
    }


def test_the_declared_policy_keeps_seven_years_after_the_churn(applied):
    assert applied["declared"] == [], "nothing of the company is 7 (or, for usage, 2) years old"
    assert applied["boundary"][2557]["customers"] == 0
    assert applied["boundary"][2558]["customers"] == 1
    assert applied["boundary"][2558]["people"]["hubspot_contact"] >= 1


def test_the_churned_customers_people_are_anonymised_and_verified_gone(company, applied):
    _, cfg, _ = company
    gone, outcome = applied["gone"], applied["outcome"]
    assert 0 < len(applied["expired"]) < len(applied["kept"])
    assert outcome["rules"]["churned_customer_people"]["customers"] == len(applied["expired"])
    assert gone["emails"] and gone["contacts"] and gone["users"] and gone["product"]
    assert outcome["verified"]["found"] == 0 and outcome["compacted"].startswith("compacted")
    # Looked for again here, found by the plain joins rather than the job's crosswalk.
    ids = sorted(gone["contacts"] | gone["users"] | gone["product"] | applied["inactive"])
    assert retention.verify(cfg, sorted(gone["emails"]), ids) == []
    assert not retention.pending_file(cfg).exists()
    # Every row stays: the people are anonymised, not deleted.
    before, after = applied["before"].digest, applied["after"].digest
    assert {t: rows for t, (rows, _) in before.items()} == {t: rows for t, (rows, _) in after.items()}
    assert applied["contacts"][0] == applied["contacts"][1]
    # Counts and places only: nothing the job reported or logged names a person.
    reported = json.dumps(outcome) + applied["stdout"]
    assert not [v for v in [*gone["emails"], *ids] if v in reported]


def test_aggregates_are_unchanged(applied):
    before, after = applied["before"].digest, applied["after"].digest
    assert {t: before[t] for t in AGGREGATES} == {t: after[t] for t in AGGREGATES}
    # Product users keep a pseudonym of their own: distinct users per customer and week hold.
    assert applied["weekly_users"][0] == applied["weekly_users"][1]
    changed = {t for t in before if before[t] != after[t]}
    assert changed <= set(applied["outcome"]["rows"]), changed - set(applied["outcome"]["rows"])


def test_everyone_else_is_untouched(applied):
    gone, others = applied["gone"], applied["others"]
    assert not (gone["emails"] & others["emails"]) and not (gone["contacts"] & others["contacts"])
    assert applied["untouched"]["contacts"] and applied["untouched"]["events"]
    assert applied["untouched"] == applied["still"]


def test_product_users_unseen_for_the_period_are_anonymised(applied):
    inactive, outcome = applied["inactive"], applied["outcome"]
    active = applied["others"]["product"] - inactive
    assert inactive and active
    assert outcome["rules"]["inactive_product_users"]["people"]["product_user"] >= len(
        inactive - applied["gone"]["product"]
    )


@pytest.fixture(scope="module")
def reapplied(company, applied) -> dict:
    _, cfg, policy = company
    outcome = retention.run(cfg, AS_OF, retention.load_policy(policy))
    return {"outcome": outcome, "after": _snapshot(cfg)}


def test_a_second_run_finds_nothing_and_changes_nothing(applied, reapplied):
    outcome = reapplied["outcome"]
    assert outcome["customers"] == 0 and outcome["people"] == {} and outcome["rows"] == {}
    assert outcome["compacted"] is False and outcome["verified"] is None
    assert outcome["seconds"] < 5
    assert reapplied["after"] == applied["after"], "no table, no landing file changed; the file was not rewritten"


def test_a_record_sent_again_is_anonymised_again_also_after_a_stopped_run(company, applied, reapplied, monkeypatch):
    _, cfg, policy = company
    with duckdb.connect(str(cfg.warehouse)) as con:
        columns = [c for (c,) in _rows(con, "SELECT column_name FROM (DESCRIBE raw_hubspot.contacts)")]
        row = dict(zip(columns, applied["resend"]))
        row["_dlt_load_id"] = "9999999999.0"  # a later load than any
        con.execute(
            f"INSERT INTO raw_hubspot.contacts ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            list(row.values()),
        )
    rows = applied["after"].digest["raw_hubspot.contacts"][0]

    def stopped(warehouse):
        raise OSError("the disk is full")

    monkeypatch.setattr(erasure, "compact", stopped)
    with pytest.raises(OSError):
        retention.run(cfg, AS_OF, retention.load_policy(policy))
    assert retention.pending_file(cfg).exists()
    assert retention.pending_file(cfg).stat().st_mode & 0o077 == 0
    monkeypatch.undo()

    outcome = retention.run(cfg, AS_OF, retention.load_policy(policy))
    assert outcome["customers"] == 0, "the first run anonymised it in the warehouse"
    assert outcome["resumed"] and outcome["verified"]["found"] == 0
    assert outcome["compacted"].startswith("compacted")
    assert not retention.pending_file(cfg).exists()
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        assert _rows(con, "SELECT count(*) FROM raw_hubspot.contacts")[0][0] == rows
        newest = _rows(con, "SELECT email, _dlt_load_id FROM raw_hubspot.contacts WHERE _dlt_load_id = '9999999999.0'")
    assert newest == [(None, "9999999999.0")], "the newer load's row stays, anonymised"
    assert retention.verify(cfg, [row["email"].lower()], [row["id"]]) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"keep_for": 3}, "entry 'x': unknown key(s) keep_for"),
        ({"after": "signup"}, "entry 'x': after: unknown clock 'signup'"),
        ({"keep_days": -1}, "entry 'x': keep_days must be a whole number"),
        ({"keep_days": "7 years"}, "entry 'x': keep_days must be a whole number"),
        ({"covers": ["leads"]}, "entry 'x': covers: unknown leads"),
        ({"after": "last_event"}, "entry 'x': after: last_event applies to product_users only, not crm_contacts"),
        ({"action": "delete"}, "entry 'x': action: unknown 'delete'"),
        ({"name": None}, "entry 1: name must be"),
    ],
)
def test_an_invalid_policy_names_the_entry_and_the_key(entry, message):
    valid = {"name": "x", "covers": ["crm_contacts"], "after": "churn", "keep_days": 1, "action": "anonymise"}
    with pytest.raises(retention.RetentionPolicyError) as e:
        retention.parse_policy({"retention": [{**valid, **entry}]})
    assert message in str(e.value)


def test_a_policy_names_each_entry_once_and_requires_its_keys():
    valid = {"name": "x", "covers": ["crm_contacts"], "after": "churn", "keep_days": 1, "action": "anonymise"}
    with pytest.raises(retention.RetentionPolicyError, match="entry 'x' is declared 2 times"):
        retention.parse_policy({"retention": [valid, valid]})
    with pytest.raises(retention.RetentionPolicyError, match="entry 'x': missing keep_days"):
        retention.parse_policy({"retention": [{k: v for k, v in valid.items() if k != "keep_days"}]})
    with pytest.raises(retention.RetentionPolicyError, match="expected one key, `retention`"):
        retention.parse_policy({"policies": []})
    assert [r.keep_days for r in retention.load_policy()] == [2557, 730]


def test_the_job_and_its_schedule():
    from orchestration.retention_job import retention_job, weekly_retention

    assert weekly_retention.cron_schedule == "0 7 * * 0" and weekly_retention.execution_timezone == "UTC"
    assert weekly_retention.default_status.value == "RUNNING"
    assert {n.name: n.definition.pool for n in retention_job.nodes} == {
        "find_expired_data": "duckdb_warehouse",
        "anonymise_expired_data": "duckdb_warehouse",
    }
