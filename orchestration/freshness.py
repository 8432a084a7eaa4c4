"""How stale each source may get before someone should hear about it.

Declared once here and turned into Dagster freshness policies on the raw assets (evaluated by
the freshness daemon that `dagster dev` runs).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

# (warn after, fail after) since the last successful load. The sources are loaded daily, so
# a missed day warns and two missed days fail; usage events arrive continuously and are
# picked up by the landing-folder sensor, so they are held to a tighter window.
SOURCE_WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "stripe": (timedelta(hours=26), timedelta(hours=50)),
    "hubspot": (timedelta(hours=26), timedelta(hours=50)),
    "zendesk": (timedelta(hours=26), timedelta(hours=50)),
    "usage_events": (timedelta(hours=6), timedelta(hours=26)),
}


def source_policy(source: str) -> dg.FreshnessPolicy:
    warn, fail = SOURCE_WINDOWS[source]
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)
