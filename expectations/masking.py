"""Personal data as a sample may show it, in every report, alert and Data Docs page."""

from __future__ import annotations

from typing import Any


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``; keeps the domain for triage."""
    local, at, domain = value.partition("@")
    return f"{local[:1]}***{at}{domain}"


def mask(value: Any) -> Any:
    """Emails keep their domain, other text its first letter; anything else is not personal."""
    if not isinstance(value, str):
        return value
    if "@" in value:
        return mask_email(value)
    return f"{value[:1]}***"
