"""Dagster freshness policies from the windows declared once in `expectations.freshness_windows`
(evaluated by the freshness daemon that `dagster dev` runs); the same windows are the
timeliness checks of the suites."""

from __future__ import annotations

import dagster as dg

from expectations.freshness_windows import MARTS, SOURCES, Freshness


def _policy(window: Freshness) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=window.fail, warn_window=window.warn)


def how_judged(window: Freshness) -> str:
    """What an asset's page says of its freshness, beside the scorecard's timeliness: two
    judges of one window, of different things, which may well disagree."""
    judged = (
        f"the `{window.check_name}` timeliness check of the {window.entity} audit judges how old its newest "
        "data is at the as-of time (a feed that loads but delivers nothing new passes this policy and "
        "fails that check)"
        if window.relation
        else "no check judges its data's age (it has no timestamp to judge it by)"
    )
    return (
        f"\n\nFreshness: warn after {window.warn_hours:g} h, fail after {window.fail_hours:g} h. Dagster's "
        f"policy judges how long ago the asset was last {'loaded' if window.kind == 'source' else 'built'}, "
        f"against the clock; {judged}."
    )


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
