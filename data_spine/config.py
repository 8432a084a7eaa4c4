"""Where things live, read from the environment once.

Every path the platform writes is derived here so that ingestion, dbt, quality and
orchestration agree on one warehouse file and one reports folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    path = Path(value) if value else default
    return path if path.is_absolute() else (PROJECT_ROOT / path)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    warehouse: Path
    preset: str
    seed: int
    as_of: date | None
    # Known defects in the sample company: `default`, `none`, or `name=rate,...` overrides
    # (see sample_company.defects.DefectRates.parse).
    defects: str = "default"
    # How vendor-realistic the sample company looks: `default` or `name=value,...` (see
    # sample_company.variants.Variant.parse).
    variant: str = "default"

    @property
    def sources_dir(self) -> Path:
        """State of the simulated SaaS systems, served by the local vendor APIs."""
        return self.data_dir / "sources"

    @property
    def landing_dir(self) -> Path:
        """Folder the event collector drops usage-event files into."""
        return _path("SPINE_LANDING_DIR", self.data_dir / "landing" / "usage_events")

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def dlt_dir(self) -> Path:
        """dlt's pipeline working folders (state, pending load packages)."""
        return self.data_dir / "dlt"


def settings() -> Settings:
    as_of = os.environ.get("SPINE_AS_OF")
    data_dir = _path("SPINE_DATA_DIR", PROJECT_ROOT / "data")
    return Settings(
        data_dir=data_dir,
        warehouse=_path("SPINE_WAREHOUSE", data_dir / "warehouse.duckdb"),
        preset=os.environ.get("SPINE_PRESET", "small"),
        seed=int(os.environ.get("SPINE_SEED", "42")),
        as_of=date.fromisoformat(as_of) if as_of else None,
        defects=os.environ.get("SPINE_DEFECTS", "default"),
        variant=os.environ.get("SPINE_VARIANT", "default"),
    )
