"""Write the sample company to disk, byte-for-byte reproducible for a seed."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from sample_company import vendors
from sample_company.defects import DefectRates, inject
from sample_company.presets import get_preset
from sample_company.simulate import simulate
from sample_company.variants import Variant

MANIFEST = "manifest.json"


def default_as_of() -> date:
    """Yesterday (UTC): the history ends on the last complete day."""
    return date.today() - timedelta(days=1)


def _write_jsonl(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_ndjson(path)


def write_jsonl_gz(df: pl.DataFrame, path: Path) -> None:
    # mtime=0 and no file name in the header keep the gzip bytes reproducible; level 6
    # compresses about as well as 9 in a third of the time.
    buf = io.BytesIO()
    df.write_ndjson(buf)
    path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=6, mtime=0))


def _write_day(events: pl.DataFrame, rows: np.ndarray, path: Path) -> None:
    write_jsonl_gz(events[rows].drop("_day"), path)


def generate(
    sources_dir: Path,
    landing_dir: Path,
    preset: str = "small",
    seed: int = 42,
    as_of: date | None = None,
    defects: DefectRates | str | None = None,
    variant: Variant | str | None = None,
    log=print,
) -> dict:
    """Generate the company and return its manifest (also written to `sources_dir`).

    `defects` are the rates of known defects to inject (default: `DefectRates()`; `"none"`
    or `DefectRates.none()` for a clean company); see `sample_company.defects`. `variant`
    says how vendor-realistic it looks (default: `Variant()`); see `sample_company.variants`."""
    p = get_preset(preset)
    rates = defects if isinstance(defects, DefectRates) else DefectRates.parse(defects)
    variant = variant if isinstance(variant, Variant) else Variant.parse(variant)
    as_of = as_of or default_as_of()
    started = time.perf_counter()
    log(
        f"Generating the {p.name!r} company (seed {seed}, as of {as_of}, "
        f"{'with known defects' if rates.enabled else 'clean'}, variant {variant}) ..."
    )
    company = simulate(p, seed, as_of, variant)
    frames = {
        "stripe": vendors.stripe(company, variant),
        "hubspot": vendors.hubspot(company, variant),
        "zendesk": vendors.zendesk(company, variant),
    }
    defect_report = inject(company, frames, rates, seed)
    events = vendors.usage_events(company, variant)

    for folder in (sources_dir, landing_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

    counts: dict[str, dict[str, int]] = {}
    # Serialising and compressing release the GIL, so files are written side by side.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        jobs = []
        for system, tables in frames.items():
            counts[system] = {}
            for name, df in tables.items():
                jobs.append(pool.submit(_write_jsonl, df, sources_dir / system / f"{name}.jsonl"))
                counts[system][name] = df.height
        # One file per day received; each day's rows are gathered only when its file is
        # written, so the events are never held twice.
        day = events["_day"].to_numpy()
        order = np.argsort(day, kind="stable")
        day_of = day[order]
        starts = np.flatnonzero(np.r_[True, day_of[1:] != day_of[:-1]])
        for start, stop in zip(starts, np.r_[starts[1:], len(order)]):
            path = landing_dir / f"events_{day_of[start].astype(object):%Y-%m-%d}.jsonl.gz"
            jobs.append(pool.submit(_write_day, events, order[start:stop], path))
        for job in jobs:
            job.result()
    counts["usage"] = {"events": events.height, "files": len(starts)}

    manifest = {
        "preset": asdict(p),
        "seed": seed,
        "as_of": as_of.isoformat(),
        "counts": counts,
        "defects": defect_report,
        "variant": variant.as_dict(),
    }
    (sources_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(
        f"  wrote {sum(sum(v.values()) for k, v in counts.items() if k != 'usage'):,} API records "
        f"and {events.height:,} usage events in {len(starts)} files ({time.perf_counter() - started:.1f}s)"
    )
    if rates.enabled:
        hit = sum(len(ids) for per_entity in defect_report["records"].values() for ids in per_entity.values())
        log(f"  injected {hit:,} known defects (listed in {sources_dir / MANIFEST})")
    return manifest


def read_manifest(sources_dir: Path) -> dict:
    path = sources_dir / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no sample company at {sources_dir}: run `spine generate` first")
    return json.loads(path.read_text())
