"""Scale presets: how big the sample company is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    companies: int
    usage_events: int
    history_days: int = 730
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny", companies=60, usage_events=5_000, description="unit tests"),
        Preset("small", companies=500, usage_events=100_000, description="demo and tests"),
        Preset("medium", companies=5_000, usage_events=1_000_000, description="local load checks"),
        Preset("large", companies=50_000, usage_events=10_000_000, description="benchmarks"),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown scale preset {name!r}; choose one of: {known}") from None
