"""Retention: personal data kept as long as `retention.yml` declares, then anonymised.

    load_policy ─► expired(con, policy, as_of) ─► apply(cfg, expired) ─► summary (counts only)

`expired` finds, as of a day, whose personal data has outlived its rule:

- `after: churn`: the customers `marts.customers` holds as `churned`, their churn dated the last
  day of the month of their latest churn movement (`marts.revenue_movements` books a churn in
  the first month without MRR, so the customer had left by that month's end: the clock never
  starts before the churn did). Their people are found in the raw layer through every source id
  `marts.customer_crosswalk` maps to the customer (merged duplicates too): the HubSpot contacts
  of its companies (`associatedcompanyid`), the Zendesk end-users of its organizations and the
  requesters of their tickets, the product user and device ids of its workspaces (usage events'
  `account_id`, and `int_usage_user_accounts` for calls that name no account), the bill-to
  emails of its Stripe customers. Which columns hold a person's email or id is the
  classification's answer (`personal_in`), as for an erasure.
- `after: last_event`: product user and device ids whose latest usage event is older than the
  rule allows, whichever customer they belong to.

A person who also belongs to a customer not expiring under the same rule keeps every email and
id linked to that customer. Values already anonymised (pseudonyms, nulls, `[erased]`) are never
found again: a second run finds nothing, and then `apply` does nothing at all.

`apply` anonymises every expired person at once with the erasure's steps: the warehouse in one
transaction (`erasure.erase_warehouse`; a record its source sent again since an earlier run then
has the older row's key, and the newer row stays), the file compacted, the landing files
rewritten, dlt's load packages removed, each role's access file rebuilt; then `scan` must find
none of their emails and ids anywhere, or `RetentionNotVerified` names the places. Until then
their emails and ids wait in an owner-only pending file (`pending_file`), so that a run stopped
half-way is finished, and verified, by the next one: once the warehouse is anonymised,
`expired` cannot find them again. Names are not searched for or redacted elsewhere: two people
share a name more often than an email, and the rows about the person lose their names with the
rest of their personal text.

Nothing here writes a person's email or id to a log, metadata or the returned summary.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

from data_spine.settings import Settings
from privacy import erasure, scan, suppression
from privacy.access import publish_role_access
from privacy.keys import privacy_key
from privacy.subjects import PERSON_ID_KINDS, Subject, normalise_email
from privacy.warehouse_tables import base_tables, columns_of, personal_in, quoted

POLICY = Path(__file__).with_name("retention.yml")
CLOCKS = ("churn", "last_event")
PEOPLE = ("crm_contacts", "support_users", "product_users", "billing_contacts")
ACTIONS = ("anonymise",)
KEYS = {"name", "description", "covers", "after", "keep_days", "action"}
REQUIRED = KEYS - {"description"}
# Clocks that only some kinds of people have.
CLOCK_COVERS = {"last_event": {"product_users"}}

CROSSWALK = "marts.customer_crosswalk"
# Zendesk staff are the company's own people, not the customer's.
STAFF_ROLES = ("agent", "admin")
# What erasure leaves in place of an id (`keys.pseudonym`, or a negative integer for a numeric
# id): not a person's id any more.
_PSEUDONYM = re.compile(r"p_[0-9a-f]{16}|-[0-9]+")


class RetentionPolicyError(ValueError):
    """retention.yml is not valid; the message names the entry and the key."""


class RetentionNotVerified(RuntimeError):
    """Something of an anonymised person is still found; the message names places, never values."""


@dataclass(frozen=True)
class Rule:
    name: str
    covers: tuple[str, ...]
    after: str
    keep_days: int
    action: str = "anonymise"
    description: str = ""


@dataclass(frozen=True)
class Expired:
    """The people of one customer (or, for `last_event`, of one workspace's customer, None when
    unknown) whose data one rule has expired. `since` is when the clock started: the churn, or
    the latest event among them. Holds personal data in `subject` only, whose repr shows counts."""

    rule: str
    customer_id: str | None
    since: date
    subject: Subject
    people: Mapping[str, int] = field(default_factory=dict)  # ids and emails, by kind


# -- the policy ------------------------------------------------------------------------------


def load_policy(path: Path | None = None) -> list[Rule]:
    path = Path(path or POLICY)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RetentionPolicyError(f"{path.name}: not valid YAML: {e}") from e
    return parse_policy(data, path.name)


def parse_policy(data: Any, where: str = "retention.yml") -> list[Rule]:
    if not isinstance(data, dict) or set(data) != {"retention"} or not isinstance(data["retention"], list):
        raise RetentionPolicyError(f"{where}: expected one key, `retention`, holding a list of entries")
    rules: list[Rule] = []
    for n, entry in enumerate(data["retention"], start=1):
        label = f"{where}: entry {n}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label = f"{where}: entry {entry['name']!r}"
        rules.append(_rule(entry, label))
    names = [r.name for r in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        raise RetentionPolicyError(f"{where}: entry {name!r} is declared {names.count(name)} times")
    return rules


def _rule(entry: Any, label: str) -> Rule:
    if not isinstance(entry, dict):
        raise RetentionPolicyError(f"{label}: expected a mapping of {', '.join(sorted(KEYS))}")
    unknown = sorted(set(map(str, entry)) - KEYS)
    if unknown:
        raise RetentionPolicyError(f"{label}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    missing = sorted(REQUIRED - set(entry))
    if missing:
        raise RetentionPolicyError(f"{label}: missing {', '.join(missing)}")
    name = entry["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise RetentionPolicyError(f"{label}: name must be lower case letters, digits and underscores")
    covers = entry["covers"]
    if isinstance(covers, str):
        covers = [covers]
    if not isinstance(covers, list) or not covers:
        raise RetentionPolicyError(f"{label}: covers must list some of {', '.join(PEOPLE)}")
    bad = [str(c) for c in covers if c not in PEOPLE]
    if bad:
        raise RetentionPolicyError(f"{label}: covers: unknown {', '.join(bad)} (known: {', '.join(PEOPLE)})")
    if len(set(covers)) != len(covers):
        raise RetentionPolicyError(f"{label}: covers names a kind twice")
    after = entry["after"]
    if after not in CLOCKS:
        raise RetentionPolicyError(f"{label}: after: unknown clock {after!r} (known: {', '.join(CLOCKS)})")
    allowed = CLOCK_COVERS.get(after)
    if allowed is not None and not set(covers) <= allowed:
        others = ", ".join(sorted(set(covers) - allowed))
        raise RetentionPolicyError(
            f"{label}: after: {after} applies to {', '.join(sorted(allowed))} only, not {others}"
        )
    keep_days = entry["keep_days"]
    if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 0:
        raise RetentionPolicyError(f"{label}: keep_days must be a whole number of days, 0 or more (got {keep_days!r})")
    action = entry["action"]
    if action not in ACTIONS:
        raise RetentionPolicyError(f"{label}: action: unknown {action!r} (known: {', '.join(ACTIONS)})")
    description = entry.get("description") or ""
    if not isinstance(description, str):
        raise RetentionPolicyError(f"{label}: description must be text")
    return Rule(name, tuple(covers), after, keep_days, action, description.strip())


# -- what has expired ------------------------------------------------------------------------


def expired(con: duckdb.DuckDBPyConnection, policy: Iterable[Rule], as_of: date) -> list[Expired]:
    """Whose personal data the policy has expired on `as_of`, by rule and customer."""
    found: list[Expired] = []
    linked: dict[str, dict[str, set[tuple[str, str]]]] | None = None
    for rule in policy:
        if rule.after == "churn":
            if linked is None:
                linked = _linked_people(con)
            found += _expired_after_churn(con, rule, as_of, linked)
        elif rule.after == "last_event":
            found += _expired_after_last_event(con, rule, as_of)
    return found


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(columns_of(con, schema, table))


def _churned(con: duckdb.DuckDBPyConnection) -> dict[str, date]:
    """Churned customer -> the last day of the month of its latest churn movement."""
    if not (_exists(con, "marts", "customers") and _exists(con, "marts", "revenue_movements")):
        return {}
    rows = con.execute(
        "SELECT c.customer_id, max(m.month) FROM marts.customers c "
        "JOIN marts.revenue_movements m ON m.customer_id = c.customer_id "
        "WHERE c.status = 'churned' AND m.movement = 'churn' GROUP BY c.customer_id"
    ).fetchall()
    return {customer: _month_end(month) for customer, month in rows}


def _month_end(day: date) -> date:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - timedelta(days=1)


def _person_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str, kinds: Iterable[str]) -> list[tuple]:
    """(column, kind) of the table's columns holding a person's email (`email`) or id of the kinds."""
    wanted = set(kinds)
    found = []
    for column in personal_in(con, schema, table):
        kind = "email" if column.personal_data == "email" else column.identifies
        if column.personal_data in ("email", "identifier") and kind in wanted:
            found.append((column.name, kind))
    return found


def _values_linked(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, kinds: Iterable[str], link: str
) -> list[tuple[str, str, str]]:
    """(customer_id, kind, value) for the person columns of `schema.table` (alias `t`), joined to
    customers by `link` (a SQL expression of `t` naming a crosswalk `source_key`)."""
    columns = _person_columns(con, schema, table, kinds)
    if not columns:
        return []
    selects = [
        f"SELECT x.customer_id, '{kind}', CAST(t.{quoted(name)} AS VARCHAR) FROM {quoted(schema)}.{quoted(table)} t "
        f"JOIN {CROSSWALK} x ON x.source_key = {link} WHERE t.{quoted(name)} IS NOT NULL"
        for name, kind in columns
    ]
    return con.execute(" UNION ALL ".join(selects)).fetchall()


def _linked_people(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, set[tuple[str, str]]]]:
    """kind of people -> customer_id -> {(email or id kind, value)}: everyone the raw layer links
    to a customer, through the crosswalk's source ids."""
    linked: dict[str, dict[str, set[tuple[str, str]]]] = {kind: defaultdict(set) for kind in PEOPLE}
    if not _exists(con, *CROSSWALK.split(".")):
        return linked
    rows: dict[str, list[tuple[str, str, str]]] = {kind: [] for kind in PEOPLE}

    contacts = columns_of(con, "raw_hubspot", "contacts")
    if "associatedcompanyid" in contacts:
        rows["crm_contacts"] += _values_linked(
            con,
            "raw_hubspot",
            "contacts",
            ("email", "hubspot_contact"),
            "'hubspot:' || CAST(t.associatedcompanyid AS VARCHAR)",
        )

    users = columns_of(con, "raw_zendesk", "users")
    if "id" in users and "organization_id" in users:
        staff = (
            f"SELECT id FROM raw_zendesk.users WHERE role IN ({', '.join(repr(r) for r in STAFF_ROLES)})"
            if "role" in users
            else "SELECT NULL::BIGINT WHERE false"
        )
        tickets = columns_of(con, "raw_zendesk", "tickets")
        requesters = (
            "UNION SELECT requester_id, organization_id FROM raw_zendesk.tickets WHERE organization_id IS NOT NULL"
            if {"requester_id", "organization_id"} <= set(tickets)
            else ""
        )
        members = f"SELECT id AS user_id, organization_id FROM raw_zendesk.users {requesters}"
        linked_users = (
            f"SELECT DISTINCT x.customer_id, m.user_id FROM ({members}) m "
            f"JOIN {CROSSWALK} x ON x.source_key = 'zendesk:' || CAST(m.organization_id AS VARCHAR) "
            f"WHERE m.user_id IS NOT NULL AND m.user_id NOT IN ({staff})"
        )
        rows["support_users"] += [
            (customer, "zendesk_user", str(user_id)) for customer, user_id in con.execute(linked_users).fetchall()
        ]
        for name, _ in _person_columns(con, "raw_zendesk", "users", ("email",)):
            rows["support_users"] += con.execute(
                f"SELECT l.customer_id, 'email', CAST(u.{quoted(name)} AS VARCHAR) FROM ({linked_users}) l "
                f"JOIN raw_zendesk.users u ON u.id = l.user_id WHERE u.{quoted(name)} IS NOT NULL"
            ).fetchall()

    events = columns_of(con, "raw_usage_events", "events")
    if "account_id" in events:
        rows["product_users"] += _values_linked(
            con, "raw_usage_events", "events", ("product_user",), "'product:' || t.account_id"
        )
    accounts = columns_of(con, "intermediate", "int_usage_user_accounts")
    if "workspace_id" in accounts:
        rows["product_users"] += _values_linked(
            con, "intermediate", "int_usage_user_accounts", ("product_user",), "'product:' || t.workspace_id"
        )

    if _exists(con, "raw_stripe", "customers"):
        rows["billing_contacts"] += _values_linked(
            con, "raw_stripe", "customers", ("email",), "'stripe:' || CAST(t.id AS VARCHAR)"
        )

    for people, found in rows.items():
        for customer, kind, value in found:
            value = _person_value(kind, value)
            if value is not None:
                linked[people][customer].add((kind, value))
    return linked


def _person_value(kind: str, value: str | None) -> str | None:
    """The value as the erasure matches it, or None when it is no longer a person's (an erased
    email, a pseudonymised id)."""
    if value is None or not value.strip():
        return None
    if kind == "email":
        return normalise_email(value) if "@" in value else None
    value = value.strip()
    return None if _PSEUDONYM.fullmatch(value) else value


def _subject(values: Iterable[tuple[str, str]]) -> Subject:
    ids: dict[str, set[str]] = defaultdict(set)
    emails: set[str] = set()
    for kind, value in values:
        if kind == "email":
            emails.add(value)
        elif kind in PERSON_ID_KINDS:
            ids[kind].add(value)
    return Subject(emails=frozenset(emails), ids={k: frozenset(v) for k, v in ids.items()})


def _counts(subject: Subject) -> dict[str, int]:
    counts = {"email": len(subject.emails)} if subject.emails else {}
    return counts | {kind: len(values) for kind, values in sorted(subject.ids.items())}


def _expired_after_churn(
    con: duckdb.DuckDBPyConnection, rule: Rule, as_of: date, linked: Mapping[str, Mapping[str, set]]
) -> list[Expired]:
    churned = _churned(con)
    due = {c: on for c, on in churned.items() if on + timedelta(days=rule.keep_days) < as_of}
    if not due:
        return []
    # Every email and id some customer not expiring here holds, whatever kind of person it is there.
    kept = {value for people in linked.values() for c, values in people.items() if c not in due for value in values}
    found = []
    for customer, churned_on in sorted(due.items()):
        values = {v for people in rule.covers for v in linked[people].get(customer, ())} - kept
        if values:
            subject = _subject(values)
            found.append(Expired(rule.name, customer, churned_on, subject, _counts(subject)))
    return found


def _expired_after_last_event(con: duckdb.DuckDBPyConnection, rule: Rule, as_of: date) -> list[Expired]:
    events = columns_of(con, "raw_usage_events", "events")
    columns = _person_columns(con, "raw_usage_events", "events", ("product_user",))
    if "timestamp" not in events or not columns:
        return []
    seen = "greatest(t.timestamp, coalesce(t.received_at, t.timestamp))" if "received_at" in events else "t.timestamp"
    account = "t.account_id" if "account_id" in events else "NULL::VARCHAR"
    ids = " UNION ALL ".join(
        f"SELECT CAST(t.{quoted(name)} AS VARCHAR) AS id, {account} AS account_id, {seen} AS seen "
        f"FROM raw_usage_events.events t WHERE t.{quoted(name)} IS NOT NULL"
        for name, _ in columns
    )
    crosswalk = _exists(con, *CROSSWALK.split("."))
    customer = (
        f"(SELECT x.customer_id FROM {CROSSWALK} x WHERE x.source_key = 'product:' || l.account_id)"
        if crosswalk
        else "NULL::VARCHAR"
    )
    # A whole instant is compared, so an event on the last day kept still counts.
    cutoff = datetime.combine(as_of - timedelta(days=rule.keep_days), datetime.min.time(), UTC)
    rows = con.execute(
        f"SELECT l.id, l.last_seen, {customer} FROM (SELECT id, max(seen) AS last_seen, "
        f"arg_max(account_id, seen) AS account_id FROM ({ids}) GROUP BY id) l WHERE l.last_seen < ?",
        [cutoff],
    ).fetchall()
    by_customer: dict[str | None, list[tuple[str, datetime]]] = defaultdict(list)
    for value, last_seen, customer_id in rows:
        value = _person_value("product_user", value)
        if value is not None:
            by_customer[customer_id].append((value, last_seen))
    found = []
    for customer_id, people in sorted(by_customer.items(), key=lambda item: item[0] or ""):
        subject = _subject(("product_user", value) for value, _ in people)
        since = max(last for _, last in people)
        since_day = since.astimezone(UTC).date() if since.tzinfo else since.date()
        found.append(Expired(rule.name, customer_id, since_day, subject, _counts(subject)))
    return found


# -- anonymising what expired --------------------------------------------------------------


def merged(found: Iterable[Expired]) -> Subject:
    """Everyone expired, as one subject: one pass over each table, one transaction."""
    emails: set[str] = set()
    ids: dict[str, set[str]] = defaultdict(set)
    for entry in found:
        emails |= entry.subject.emails
        for kind, values in entry.subject.ids.items():
            ids[kind] |= values
    return Subject(emails=frozenset(emails), ids={k: frozenset(v) for k, v in sorted(ids.items())})


def describe(found: Iterable[Expired]) -> dict[str, Any]:
    """What expired, by rule, as counts: customers and their people's emails and ids by kind."""
    found = list(found)
    rules: dict[str, dict[str, Any]] = {}
    for entry in found:
        rule = rules.setdefault(entry.rule, {"customers": 0, "people": {}})
        rule["customers"] += entry.customer_id is not None
        for kind, n in entry.people.items():
            rule["people"][kind] = rule["people"].get(kind, 0) + n
    everyone = merged(found)
    return {
        "customers": len({e.customer_id for e in found if e.customer_id is not None}),
        "people": _counts(everyone),
        "rules": rules,
    }


def pending_file(cfg: Settings) -> Path:
    """The people an `apply` is anonymising, until their verification passes: a run that stops
    half-way (the warehouse anonymised, the landing files not yet) would otherwise leave them
    unfindable by `expired`, and the rest undone. Owner-only, like a request's pending file."""
    return cfg.privacy_dir / "retention" / "pending.json"


def _read_pending(cfg: Settings) -> Subject:
    path = pending_file(cfg)
    if not path.exists():
        return Subject(emails=frozenset())
    found = json.loads(path.read_text())
    return Subject(
        emails=frozenset(found.get("emails", ())), ids={k: frozenset(v) for k, v in found.get("ids", {}).items()}
    )


def _write_pending(cfg: Settings, subject: Subject) -> None:
    path = pending_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"emails": sorted(subject.emails), "ids": {k: sorted(v) for k, v in subject.ids.items()}}, f)
    os.replace(partial, path)


def apply(cfg: Settings, found: list[Expired]) -> dict[str, Any]:
    """Anonymise everyone expired (and whoever an interrupted earlier apply left pending) in
    every store, compact the warehouse, rebuild the roles' files and verify by a scan; what
    changed, as counts and places. Raises `RetentionNotVerified` when the scan still finds any
    of their emails or ids; they stay pending, and the next run verifies them again."""
    started = time.monotonic()
    summary: dict[str, Any] = describe(found)
    earlier = _read_pending(cfg)
    subject = merged([*found, Expired("", None, date.min, earlier)])
    if not subject.emails and not subject.all_ids():
        return summary | {"rows": {}, "landing_files": 0, "compacted": False, "verified": None, "seconds": 0.0}
    if subject != earlier:
        _write_pending(cfg, subject)
    key = privacy_key(cfg)
    with duckdb.connect(str(cfg.warehouse)) as con:
        touched = erasure.erase_warehouse(con, subject, key)
        _keep_newest(con, touched)
    compacted = erasure.compact(cfg.warehouse)
    landing = erasure.erase_landing_files(cfg.landing_dir, subject, key)
    erasure.remove_load_packages(cfg.dlt_dir)
    publish_role_access(cfg.warehouse, cfg.data_dir, cfg)
    emails, ids = sorted(subject.emails), sorted(subject.all_ids())
    findings = verify(cfg, emails, ids)
    if findings:
        raise RetentionNotVerified(
            f"expired personal data is still found in {len(findings)} place(s): "
            + "; ".join(f.describe() for f in findings[:20])
        )
    pending_file(cfg).unlink()
    rows: dict[str, int] = {}
    for t in touched:
        rows[t.place] = rows.get(t.place, 0) + t.rows
    return summary | {
        "resumed": bool(earlier.emails or earlier.all_ids()),
        "rows": dict(sorted(rows.items())),
        "landing_files": len(landing),
        "compacted": compacted.action,
        "verified": {"searched_for": len(emails) + len(ids), "found": 0},
        "seconds": round(time.monotonic() - started, 2),
    }


def _keep_newest(con: duckdb.DuckDBPyConnection, touched: list[erasure.Touched]) -> None:
    """A record anonymised by an earlier run and sent again by its source (updated there, or a
    full reload) is anonymised to the key the earlier row has: the newer load's row stays, as
    dlt's merge would have kept it."""
    places = sorted({t.place for t in touched if t.action == "anonymised" and t.place.startswith("raw_")})
    keys: dict[str, dict[str, list[str]]] = {}
    for place in places:
        schema, table = place.split(".", 1)
        if schema not in keys:
            keys[schema] = suppression.primary_keys(con, schema)
        suppression.keep_newest(con, schema, table, keys[schema].get(table) or [])


def verify(cfg: Settings, words: list[str], ids: list[str]) -> list[scan.Finding]:
    """`scan.scan` for the words and ids that occur anywhere at all. The scan tries one pattern
    per needle over every column and file (its cost grows with their product: minutes for a
    hundred people); one pass first finds which needles occur even as a part of something else
    (a superset of what the scan matches), and the scan judges those few."""
    skip = [pending_file(cfg)]
    present = _present(cfg, [*words, *ids], skip)
    return scan.scan(
        cfg, [w for w in words if w.lower() in present], [i for i in ids if str(i).lower() in present], skip
    )


def _present(cfg: Settings, needles: Iterable[str], skip: Iterable[Path] = ()) -> set[str]:
    """The needles (lower-cased) found as text anywhere the scan looks."""
    missing = {str(n).lower() for n in needles}
    found: set[str] = set()
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        for schema, table in base_tables(con):
            if not missing:
                break
            for chunk in _chunks(sorted(missing, key=len, reverse=True), 500):
                pattern = "|".join(re.escape(n) for n in chunk)
                values = [f"lower(CAST({quoted(c)} AS VARCHAR))" for c in columns_of(con, schema, table)]
                row = con.execute(
                    f"SELECT {', '.join(f'list(DISTINCT {v}) FILTER (WHERE regexp_matches({v}, ?))' for v in values)} "
                    f"FROM {quoted(schema)}.{quoted(table)}",
                    [pattern] * len(values),
                ).fetchone()
                texts = [text for column in row or () for text in column or ()]
                found |= {n for n in chunk if any(n in text for text in texts)}
            missing -= found
    files = [(None, cfg.warehouse), *scan.files_under(scan.written_folders(cfg), skip)]
    for _, path in files:
        if not missing:
            break
        content = scan.file_contents(path).lower()
        hits = {n for n in missing if n.encode() in content}
        found |= hits
        missing -= hits
    return found


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def run(cfg: Settings, as_of: date, policy: list[Rule] | None = None) -> dict[str, Any]:
    """Find what expired on `as_of` and anonymise it: the whole retention, as the job runs it."""
    started = time.monotonic()
    policy = load_policy() if policy is None else policy
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        found = expired(con, policy, as_of)
    summary = apply(cfg, found)
    return {"as_of": as_of.isoformat(), **summary, "seconds": round(time.monotonic() - started, 2)}
