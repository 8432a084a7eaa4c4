"""Dagster freshness policies from the windows declared once in `expectations.freshness_windows`
(evaluated by the freshness daemon that `dagster dev` runs); the same windows are the
timeliness checks of the suites."""

from __future__ import annotations

import dagster as dg

from expectations.freshness_windows import MARTS, SOURCES, Freshness


def _policy(window: Freshness) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=window.fail, warn_window=window.warn)


def source_policy(source: str) -> dg.FreshnessPolicy:
    return _policy(SOURCES[source])


def mart_policy(mart: str) -> dg.FreshnessPolicy | None:
    return _policy(MARTS[mart]) if mart in MARTS else None


def window_of(key: dg.AssetKey) -> Freshness | None:
    """The declared window behind an asset's policy: raw assets are `<source>/<resource>`,
    marts `marts/<model>`."""
    if len(key.path) != 2:
        return None
    head, name = key.path
    return MARTS.get(name) if head == "marts" else SOURCES.get(head)
