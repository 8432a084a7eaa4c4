"""Scale presets: how big the sample company is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    companies: int
    usage_events: int
    # Expected number of support tickets; the ticket rate is scaled to hit it on average.
    tickets: int
    history_days: int = 730
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny", companies=60, usage_events=5_000, tickets=1_200, description="unit tests"),
        Preset("small", companies=500, usage_events=100_000, tickets=10_000, description="demo and tests"),
        Preset("medium", companies=5_000, usage_events=1_000_000, tickets=100_000, description="local load checks"),
        Preset("large", companies=50_000, usage_events=10_000_000, tickets=1_000_000, description="benchmarks"),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown scale preset {name!r}; choose one of: {known}") from None
