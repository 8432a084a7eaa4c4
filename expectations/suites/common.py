"""Values several suites share."""

# A pragmatic address pattern: one @, no spaces or commas, a dotted domain ending in letters.
EMAIL_REGEX = r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
CURRENCIES = ["usd", "eur", "gbp"]
# Event names follow <domain>.<action>.<object>, lower-case (the governance naming rules).
EVENT_NAME_REGEX = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


def hours_after_as_of(column: str) -> str:
    """SQL for how far `column` lies after the as-of time, in hours (negative: before it)."""
    return f"(epoch({column}) - epoch($as_of)) / 3600.0"
