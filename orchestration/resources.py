"""Resources shared by the asset modules."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from pathlib import Path

import dagster as dg

from data_spine.config import settings

# Every step that opens the DuckDB file claims a slot in this pool. The instance gives each
# pool one slot (`.dagster_home/dagster.yaml`), so two runs never hold the file at once:
# DuckDB allows a single writer process.
WAREHOUSE_POOL = "duckdb_warehouse"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse and the reporting context around it."""

    path: str
    reports_dir: str
    as_of: str | None = None  # ISO date the data describes; today when unset

    def as_of_date(self) -> date:
        return date.fromisoformat(self.as_of) if self.as_of else datetime.now(timezone.utc).date()

    def as_of_end(self) -> datetime:
        """End of the as-of day (UTC): the reference time for timeliness checks."""
        return datetime.combine(self.as_of_date(), time.max, tzinfo=timezone.utc)

    @property
    def file(self) -> Path:
        return Path(self.path)


def warehouse_from_env() -> WarehouseResource:
    cfg = settings()
    return WarehouseResource(
        path=str(cfg.warehouse),
        reports_dir=str(cfg.reports_dir),
        as_of=cfg.as_of.isoformat() if cfg.as_of else None,
    )
