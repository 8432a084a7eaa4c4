"""The secret key of every keyed hash of personal data, and the hashes made with it.

A plain hash of an email is no protection: anyone can hash a list of guessed emails and compare.
Keyed with a secret, the same value always gives the same hash (so a pseudonymous id joins
across tables and the suppression list recognises a person who comes back), but only the
holder of the key can test a guess.
"""

from __future__ import annotations

import hashlib
import os
import secrets

from data_spine.settings import Settings

KEY_FILE = "key"


def privacy_key(cfg: Settings) -> bytes:
    """`SPINE_PRIVACY_KEY` when set, else the key generated once into the privacy folder."""
    if cfg.privacy_key:
        return cfg.privacy_key.encode()
    path = cfg.privacy_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32).encode()
    try:
        # Created exclusively, readable by the owner only: two processes starting at once
        # must agree on one key, and the first writer wins.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(fresh)
    return fresh


def normalised(value: str | int) -> str:
    """Emails compare case-insensitively and without surrounding blanks; ids as text."""
    return str(value).strip().lower()


def keyed_hash(key: bytes, value: str | int) -> str:
    """SHA-256 of the key and the normalised value, as hex: the same as `sql_keyed_hash`, so a
    table of millions of rows is hashed inside DuckDB (which has no HMAC) and matches what
    Python hashed. The key is a fixed-length secret prefix, which is all an equality lookup
    needs."""
    return hashlib.sha256(key + b":" + normalised(value).encode()).hexdigest()


def sql_keyed_hash(expression: str, dialect: str = "duckdb") -> str:
    """`keyed_hash` of a SQL expression, with the key as the first positional parameter (`?`),
    never in the SQL text: a view or a log would otherwise keep the secret. `dialect`: the
    warehouse's (duckdb, postgres); both give the hex digest Python gives."""
    normalised_text = f"lower(trim(CAST({expression} AS VARCHAR)))"
    if dialect == "postgres":
        # PostgreSQL's sha256 hashes bytes and returns them: the text's UTF-8, then hex.
        return f"encode(sha256(convert_to(? || ':' || {normalised_text}, 'UTF8')), 'hex')"
    return f"sha256(? || ':' || {normalised_text})"


def sql_pseudonym(expression: str, dialect: str = "duckdb") -> str:
    """`pseudonym` of a SQL expression (the key as the first parameter, see `sql_keyed_hash`)."""
    return f"'p_' || substr({sql_keyed_hash(expression, dialect)}, 1, 16)"


def pseudonym(key: bytes, value: str | int) -> str:
    """The stable stand-in for an id: the same id always gives the same pseudonym, so joins and
    distinct counts survive, and the id itself is gone."""
    return "p_" + keyed_hash(key, value)[:16]
