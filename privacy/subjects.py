"""Who a data-subject request is about: the person's emails, ids and names, found in the raw layer.

A request names a person by email (or by an id). The sources are the truth about who that is,
so the person is resolved in the raw tables only, through the classification of their columns
(`privacy.classification`): a raw row is about the person when one of its email columns holds
one of the person's emails, or one of its identifier columns holds one of the person's ids of
the kind it identifies; such a row contributes its person ids (a HubSpot contact id, a Zendesk
user id, a product user id) and its names, and the search repeats until nothing new turns up
(an email finds a Zendesk user, whose id finds nothing further). Ids are never matched across
kinds: a HubSpot contact id is only looked for where HubSpot contact ids are declared.

Company and billing-account ids (HubSpot companies, Stripe customers, workspaces) are not a
person's: they are never collected, and an erasure leaves them (and the revenue they carry) as
they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import duckdb

from privacy.keys import keyed_hash
from privacy.warehouse_tables import base_tables, personal_in, quoted

# The kinds of id that identify a person; other identifier kinds (a mart's composite key) are
# derived from these and found through them.
PERSON_ID_KINDS = ("hubspot_contact", "zendesk_user", "product_user")


@dataclass(frozen=True)
class Subject:
    """A person, as far as the warehouse knows them. Holds personal data: it lives in memory and
    in the pending request's file only, never in logs, run config or the audit."""

    emails: frozenset[str]
    ids: Mapping[str, frozenset[str]] = field(default_factory=dict)
    names: frozenset[str] = frozenset()

    def ids_of(self, kind: str) -> frozenset[str]:
        return self.ids.get(kind, frozenset())

    def all_ids(self) -> frozenset[str]:
        return frozenset(value for values in self.ids.values() for value in values)

    def hash(self, key: bytes) -> str:
        """The request's subject, as the audit keeps it: the keyed hash of the first email (or id)."""
        first = min(self.emails) if self.emails else min(self.all_ids())
        return keyed_hash(key, first)

    def hashes(self, key: bytes) -> dict[str, list[str]]:
        """Every identifier's keyed hash, by kind (`email` for emails): what the suppression list keeps."""
        found = {"email": sorted(keyed_hash(key, e) for e in self.emails)}
        for kind, values in self.ids.items():
            found[kind] = sorted(keyed_hash(key, v) for v in values)
        return found

    def __repr__(self) -> str:  # a subject printed by accident must not print the person
        return f"Subject({len(self.emails)} emails, {sum(map(len, self.ids.values()))} ids, {len(self.names)} names)"


def normalise_email(email: str) -> str:
    return email.strip().lower()


def row_filter(columns: Iterable, emails: Iterable[str], ids: Mapping[str, Iterable[str]]) -> tuple[str, list]:
    """A SQL condition (and its parameters) true for the rows of a table that are about the person."""
    emails = sorted(emails)
    clauses: list[str] = []
    params: list = []
    for column in columns:
        name = quoted(column.name)
        if column.personal_data == "email" and emails:
            clauses.append(f"lower(trim(CAST({name} AS VARCHAR))) IN ({', '.join('?' * len(emails))})")
            params += emails
        elif column.personal_data == "identifier" and column.identifies in ids and ids[column.identifies]:
            values = sorted(ids[column.identifies])
            clauses.append(f"CAST({name} AS VARCHAR) IN ({', '.join('?' * len(values))})")
            params += values
    return (" OR ".join(f"({c})" for c in clauses) or "false"), params


def resolve(
    con: duckdb.DuckDBPyConnection, emails: Iterable[str] = (), ids: Mapping[str, Iterable[str]] | None = None
) -> Subject:
    """The person behind the request's emails and ids, from the raw tables."""
    found_emails = {normalise_email(e) for e in emails if e and e.strip()}
    found_ids: dict[str, set[str]] = {kind: {str(v).strip() for v in values} for kind, values in (ids or {}).items()}
    names: set[str] = set()
    raw = [
        (schema, table)
        for schema, table in base_tables(con)
        if schema.startswith("raw_") and not schema.endswith("_staging")
    ]
    for _ in range(4):  # an email finds an id, which may find another email; it settles quickly
        before = (len(found_emails), sum(map(len, found_ids.values())))
        for schema, table in raw:
            columns = personal_in(con, schema, table)
            condition, params = row_filter(columns, found_emails, found_ids)
            if condition == "false":
                continue
            wanted = [c for c in columns if c.personal_data in ("email", "name", "identifier")]
            rows = con.execute(
                f"SELECT {', '.join(f'CAST({quoted(c.name)} AS VARCHAR)' for c in wanted)} "
                f"FROM {quoted(schema)}.{quoted(table)} WHERE {condition}",
                params,
            ).fetchall()
            for row in rows:
                name_parts = []
                for column, value in zip(wanted, row, strict=True):
                    if value is None or not str(value).strip():
                        continue
                    if column.personal_data == "email" and "@" in value:
                        found_emails.add(normalise_email(value))
                    elif column.personal_data == "identifier" and column.identifies in PERSON_ID_KINDS:
                        found_ids.setdefault(column.identifies, set()).add(str(value).strip())
                    elif column.personal_data == "name":
                        name_parts.append(str(value).strip())
                if name_parts and any(c.identifies in PERSON_ID_KINDS for c in columns):
                    names.add(" ".join(name_parts).lower())
        if before == (len(found_emails), sum(map(len, found_ids.values()))):
            break
    return Subject(
        emails=frozenset(found_emails),
        ids={kind: frozenset(values) for kind, values in found_ids.items() if values},
        # One word alone (a first name) is not the person: it stays out of what is searched for.
        names=frozenset(n for n in names if " " in n),
    )
