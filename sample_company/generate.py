"""Write the sample company to disk, byte-for-byte reproducible for a seed."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import time
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from sample_company import vendors
from sample_company.presets import get_preset
from sample_company.simulate import simulate

MANIFEST = "manifest.json"


def default_as_of() -> date:
    """Yesterday (UTC): the history ends on the last complete day."""
    return date.today() - timedelta(days=1)


def _write_jsonl(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_ndjson(path)


def _write_jsonl_gz(df: pl.DataFrame, path: Path) -> None:
    # mtime=0 and no file name in the header keep the gzip bytes reproducible.
    buf = io.BytesIO()
    df.write_ndjson(buf)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())


def generate(
    sources_dir: Path,
    landing_dir: Path,
    preset: str = "small",
    seed: int = 42,
    as_of: date | None = None,
    log=print,
) -> dict:
    """Generate the company and return its manifest (also written to `sources_dir`)."""
    p = get_preset(preset)
    as_of = as_of or default_as_of()
    started = time.perf_counter()
    log(f"Generating the {p.name!r} company (seed {seed}, as of {as_of}) ...")
    company = simulate(p, seed, as_of)

    for folder in (sources_dir, landing_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

    counts: dict[str, dict[str, int]] = {}
    for system, tables in (
        ("stripe", vendors.stripe(company)),
        ("hubspot", vendors.hubspot(company)),
        ("zendesk", vendors.zendesk(company)),
    ):
        counts[system] = {}
        for name, df in tables.items():
            _write_jsonl(df, sources_dir / system / f"{name}.jsonl")
            counts[system][name] = df.height

    events = vendors.usage_events(company)
    files = 0
    for (day,), part in events.partition_by("_day", as_dict=True, maintain_order=True).items():
        _write_jsonl_gz(part.drop("_day"), landing_dir / f"events_{day:%Y-%m-%d}.jsonl.gz")
        files += 1
    counts["usage"] = {"events": events.height, "files": files}

    manifest = {
        "preset": asdict(p),
        "seed": seed,
        "as_of": as_of.isoformat(),
        "counts": counts,
    }
    (sources_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(f"  wrote {sum(sum(v.values()) for k, v in counts.items() if k != 'usage'):,} API records "
        f"and {events.height:,} usage events in {files} files ({time.perf_counter() - started:.1f}s)")
    return manifest


def read_manifest(sources_dir: Path) -> dict:
    path = sources_dir / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no sample company at {sources_dir}: run `spine generate` first")
    return json.loads(path.read_text())
