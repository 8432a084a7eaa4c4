"""Which failures of a run on the sample company are its known defects, with the manifest's counts.

The sample company carries defects on purpose (`sample_company/defects.py`), so a run of it
fails some checks and raises some alerts: the summary says which are those, so that a
failure that is not one of them stands out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sample_company.defects import ALSO_TRIPPED, CHECKS_TRIPPED

STALE_FEED = "stale_feed"


@dataclass(frozen=True)
class Known:
    defect: str
    source: str  # the manifest's entity: `hubspot.contacts`, `usage.events`, ...
    injected: int  # records hit, or days a feed stopped
    counted_exactly: bool = False

    def differs(self, found: int | None) -> bool:
        """Whether a check that counts this defect exactly found another number of records."""
        return self.counted_exactly and found is not None and found != self.injected

    def label(self, found: int | None = None) -> str:
        unit = " days without deliveries" if self.defect == STALE_FEED else ""
        what = f"{self.defect}: {self.injected:,}{unit} in {self.source}"
        if self.differs(found):
            return f"known defect {what}, but {found:,} found"
        return f"expected ({what})"


class KnownDefects:
    """The defects a generated company's manifest lists, and what each of them trips."""

    def __init__(self, manifest: dict | None) -> None:
        defects = (manifest or {}).get("defects") or {}
        self.defects: list[Known] = [
            Known(defect, source, len(ids))
            for source, by_defect in (defects.get("records") or {}).items()
            for defect, ids in by_defect.items()
            if ids
        ]
        self.defects += [
            Known(STALE_FEED, source, int(feed["days"])) for source, feed in (defects.get("stale_feeds") or {}).items()
        ]

    def __bool__(self) -> bool:
        return bool(self.defects)

    def of_check(self, entity: str, check: str) -> Known | None:
        for known in self.defects:
            key = (known.source, known.defect)
            if CHECKS_TRIPPED.get(key) == (entity, check):
                return Known(known.defect, known.source, known.injected, counted_exactly=True)
            if (entity, check) in ALSO_TRIPPED.get(key, {}).get("checks", ()):
                return known
        return None

    def of_dbt_test(self, name: str) -> Known | None:
        for known in self.defects:
            if name.startswith(ALSO_TRIPPED.get((known.source, known.defect), {}).get("dbt_tests", ("\0",))):
                return known
        return None

    def of_alert(self, dataset: str, what: str) -> Known | None:
        for known in self.defects:
            datasets = ALSO_TRIPPED.get((known.source, known.defect), {}).get("datasets", ())
            if "freshness" in what and any(f" {name} " in f" {dataset} " for name in datasets):
                return known
        return None
