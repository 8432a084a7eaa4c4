"""NumPy helpers shared by the simulation: ids, calendar arithmetic, ragged groups."""

from __future__ import annotations

import numpy as np
import polars as pl

DAY = np.timedelta64(1, "D")
NAT = np.datetime64("NaT", "s")

_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def tokens(rng: np.random.Generator, n: int, prefix: str, length: int = 14) -> pl.Series:
    """Random ids like Stripe's (`cus_4QFJ...`), drawn from the seeded generator.

    Built as fixed-width bytes and handed to polars: NumPy unicode arrays would take 80 bytes
    a row and `np.char` loops in Python, which matters for ten million event ids."""
    codes = _ALPHABET[rng.integers(0, len(_ALPHABET), size=(n, length), dtype=np.uint8)]
    raw = pl.Series(codes.view(f"S{length}").ravel()).cast(pl.String)
    return (prefix + raw) if n else pl.Series([], dtype=pl.String)


def seconds(days: np.ndarray | float) -> np.ndarray:
    """A duration in days (possibly fractional) as timedelta64[s]."""
    return (np.asarray(days) * 86400).astype("timedelta64[s]")


def days_between(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    return (stop - start) / DAY


def uniform_between(rng: np.random.Generator, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """One instant drawn uniformly in [start, stop) per row."""
    width = (stop - start).astype("timedelta64[s]").astype(np.int64)
    return start + (rng.random(len(start)) * width).astype("timedelta64[s]")


def add_months(start: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Add whole months to datetime64[s] values, clipping the day to the month's end."""
    day = start.astype("datetime64[D]")
    month0 = day.astype("datetime64[M]")
    day_of_month = (day - month0.astype("datetime64[D]")).astype(int)
    target = month0 + months.astype("timedelta64[M]")
    month_len = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(int)
    new_day = target.astype("datetime64[D]") + np.minimum(day_of_month, month_len - 1) * DAY
    time_of_day = start - day.astype("datetime64[s]")
    return new_day.astype("datetime64[s]") + time_of_day


def position_in_group(sizes: np.ndarray) -> np.ndarray:
    """For rows repeated `sizes` times per group: 0, 1, ... within each group."""
    total = int(sizes.sum())
    return np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def group_cumsum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Running sum of `values` restarting at each new value of the (sorted) `groups`."""
    running = np.cumsum(values)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    offset = np.repeat(running[starts] - values[starts], np.diff(np.r_[starts, len(values)]))
    return running - offset


def last_at_or_before(
    groups: np.ndarray, times: np.ndarray, query_groups: np.ndarray, query_times: np.ndarray
) -> np.ndarray:
    """Index of the latest row of the same group with time <= the query time, else -1.

    `groups`/`times` must be sorted by (group, time); one sorted search answers every query."""
    origin = np.datetime64("1970-01-01T00:00:00", "s")
    span = np.int64(1) << 36  # seconds: more than two thousand years per group

    def key(g: np.ndarray, t: np.ndarray) -> np.ndarray:
        return g.astype(np.int64) * span + (t - origin).astype(np.int64)

    idx = np.searchsorted(key(groups, times), key(query_groups, query_times), side="right") - 1
    found = idx >= 0
    found[found] = groups[idx[found]] == query_groups[found]
    return np.where(found, idx, -1)


def frame(columns: dict) -> pl.DataFrame:
    """Build a polars frame; polars takes datetime64 only at ms/us/ns resolution."""
    return pl.DataFrame(
        {
            k: (v.astype("datetime64[us]") if isinstance(v, np.ndarray) and v.dtype.kind == "M" else v)
            for k, v in columns.items()
        }
    )
