"""dlt's PostgreSQL credentials with the password optional.

dlt requires a password, but a server may trust the host, or libpq may find the password in
PGPASSWORD or ~/.pgpass, which keeps it out of every URL and file. (No `from __future__ import
annotations` here: dlt evaluates the field annotations in this module.)"""

from typing import Optional

from dlt.common.configuration import configspec
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.postgres.configuration import PostgresCredentials


@configspec(init=False)
class OptionalPasswordCredentials(PostgresCredentials):
    password: Optional[TSecretStrValue] = None  # noqa: UP045 (dlt evaluates this annotation)


def credentials(url: str) -> OptionalPasswordCredentials:
    resolved = OptionalPasswordCredentials()
    resolved.parse_native_representation(url)
    resolved.resolve()
    return resolved
