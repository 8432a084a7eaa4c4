"""One more day of the sample company: what its tools hold a day after the last run.

A share of the Stripe, HubSpot and Zendesk objects change (`sample_company.changes`), and the
event collector delivers one more file: the company's last full day of usage again, one day
later (more days later after several), with new message ids, in the company's event format.
The manifest's as-of date moves on by a day, so the next `spine run` computes as of the new
day and the history it sees ends where the new file does.

The day is taken from the simulation of the company as generated (the manifest keeps the
first as-of date), not from the files, which the generator's known defects may have touched.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from sample_company.arrays import tokens
from sample_company.changes import change_sources, describe
from sample_company.event_formats import render
from sample_company.generate import MANIFEST, read_manifest, write_jsonl_gz
from sample_company.presets import get_preset
from sample_company.simulate import simulate
from sample_company.variants import Variant

# When the day's edits in the SaaS tools are stamped, if that time has already come.
CHANGES_AT = time(9, 30)


@dataclasses.dataclass(frozen=True)
class NewDay:
    day: date
    events: int
    events_file: Path
    changed: dict  # system -> object -> sample_company.changes.Changed


def add_day(sources_dir: Path, landing_dir: Path, fraction: float = 0.01, seed: int = 1, log=print) -> NewDay:
    """Write one more day into the company's vendor files and landing folder; returns what changed."""
    manifest = read_manifest(sources_dir)
    as_of = date.fromisoformat(manifest["as_of"])
    first_as_of = date.fromisoformat(manifest.get("generated_as_of", manifest["as_of"]))
    day = as_of  # history ends at midnight starting the as-of date: this day is the next one
    log(f"Adding {day} to the {manifest['preset']['name']!r} company: simulating its last day again ...")
    variant = Variant.from_manifest(manifest)
    company = simulate(get_preset(manifest["preset"]["name"]), manifest["seed"], first_as_of, variant)
    last = first_as_of - timedelta(days=1)
    shift = pl.duration(days=(day - last).days)
    received_last = pl.col("received_at").cast(pl.Date) == pl.lit(last)
    events = company.events.filter(received_last)
    # Seeded by the day, so adding the same day to the same company writes the same file.
    rng = np.random.default_rng([manifest["seed"], day.toordinal()])
    events = events.with_columns(
        tokens(rng, events.height, "evt_", 20).alias("event_id"),
        pl.col("timestamp") + shift,
        pl.col("received_at") + shift,
    )
    lines = render(dataclasses.replace(company, as_of=day + timedelta(days=1), events=events), variant.events)
    lines = lines.filter(pl.col("_day") == pl.lit(day)).drop("_day")
    path = landing_dir / f"events_{day:%Y-%m-%d}.jsonl.gz"
    landing_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(lines, path)
    log(f"  {lines.height:,} usage events in {path.name}")

    at = min(datetime.now(UTC), datetime.combine(day, CHANGES_AT, UTC))
    changed = change_sources(sources_dir, fraction=fraction, seed=seed, at=at)
    for line in describe(changed):
        log(f"  {line}")

    manifest["generated_as_of"] = first_as_of.isoformat()
    manifest["as_of"] = (day + timedelta(days=1)).isoformat()
    (sources_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(f"  the company is now as of {manifest['as_of']}")
    return NewDay(day, lines.height, path, changed)
