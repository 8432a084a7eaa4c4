"""dbt's cross-database macros as sqlfluff renders them (its jinja templater has no `dbt`).

Each returns what dbt-duckdb's implementation renders, so the linted SQL is the DuckDB SQL.
"""


def dateadd(datepart, interval, from_date_or_timestamp):
    return f"({from_date_or_timestamp} + cast({interval} as bigint) * interval 1 {datepart})"


def datediff(first_date, second_date, datepart):
    return f"(date_diff('{datepart}', {first_date}::timestamp, {second_date}::timestamp))"


def date_trunc(datepart, date):
    return f"date_trunc('{datepart}', {date})"


def hash(field):  # noqa: A001 - the name dbt gives it
    return f"md5(cast({field} as varchar))"
