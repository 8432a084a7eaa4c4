"""PostgreSQL databases of a test's own on the machine's server (127.0.0.1:5432, or the server
SPINE_TEST_POSTGRES_URL names): made empty, dropped afterwards, named so that parallel test
workers and sessions never share one."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from data_spine.warehouse import Warehouse

SERVER = os.environ.get("SPINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# The pools of the steps two runs must not do at once on PostgreSQL (orchestration.resources.
# exclusive_pool): each source's load, the dbt build, the roles' rebuild.
POOLS_ON_POSTGRES = {
    "postgres_load_stripe",
    "postgres_load_hubspot",
    "postgres_load_zendesk",
    "postgres_load_usage_events",
    "postgres_dbt_build",
    "postgres_role_access",
}


def url_of(database: str) -> str:
    return SERVER.rsplit("/", 1)[0] + f"/{database}"


@contextlib.contextmanager
def postgres_warehouse(prefix: str = "spine_test") -> Iterator[Warehouse]:
    """A PostgreSQL warehouse in a new empty database, dropped on the way out."""
    target = Warehouse("postgres", Path("/nonexistent"), url_of(f"{prefix}_{uuid.uuid4().hex[:10]}"))
    target.ensure_database()
    try:
        yield target
    finally:
        target.drop_database()
