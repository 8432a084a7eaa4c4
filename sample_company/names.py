"""Company names, people's names, web domains and emails, drawn from Faker's en_US lists.

Calling Faker once per row costs minutes at the `large` preset (150k contacts, and
`unique.company()` retries ever more often as names run out); sampling the same weighted
word lists and company formats with NumPy gives the same kind of names in milliseconds.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from faker.providers.company.en_US import Provider as CompanyProvider
from faker.providers.person.en_US import Provider as PersonProvider


def _weighted(words: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    names = np.array(list(words))
    weights = np.array(list(words.values()), dtype=float)
    return names, weights / weights.sum()


FIRST_NAMES = _weighted(PersonProvider.first_names)
LAST_NAMES = _weighted(PersonProvider.last_names)
SUFFIXES = np.array(CompanyProvider.company_suffixes)


def _pick(rng: np.random.Generator, words: tuple[np.ndarray, np.ndarray], n: int) -> np.ndarray:
    names, p = words
    return names[rng.choice(len(names), size=n, p=p)]


def people(rng: np.random.Generator, n: int) -> tuple[pl.Series, pl.Series]:
    return pl.Series(_pick(rng, FIRST_NAMES, n)), pl.Series(_pick(rng, LAST_NAMES, n))


def company_names(rng: np.random.Generator, n: int) -> pl.Series:
    """`n` distinct names in Faker's three en_US company formats (chosen uniformly, as Faker does)."""
    names = pl.Series([], dtype=pl.String)
    while names.len() < n:
        k = 2 * n + 100
        last = [_pick(rng, LAST_NAMES, k) for _ in range(3)]
        fmt = rng.integers(0, 3, size=k)
        suffix = SUFFIXES[rng.integers(0, len(SUFFIXES), size=k)]
        drawn = np.where(
            fmt == 0,
            np.char.add(np.char.add(last[0], " "), suffix),
            np.where(
                fmt == 1,
                np.char.add(np.char.add(last[0], "-"), last[1]),
                np.char.add(np.char.add(np.char.add(np.char.add(last[0], ", "), last[1]), " and "), last[2]),
            ),
        )
        names = pl.concat([names, pl.Series(drawn)]).unique(maintain_order=True)
    return names.head(n)


def domains(names: pl.Series) -> pl.Series:
    """One `.com` domain per company; a name whose slug is taken gets a number (acme2.com)."""
    slug = names.str.to_lowercase().str.replace_all(r"[^a-z0-9]", "").str.slice(0, 24)
    frame = pl.DataFrame({"slug": slug}).with_columns(k=pl.int_range(pl.len()).over("slug") + 1)
    return frame.select(
        pl.col("slug") + pl.when(pl.col("k") > 1).then(pl.col("k").cast(pl.String)).otherwise(pl.lit("")) + ".com"
    ).to_series()


def emails(first: pl.Series, last: pl.Series, domain: pl.Series) -> pl.Series:
    """first.last<n>@domain, where the running number keeps namesakes apart."""
    return (
        pl.DataFrame({"f": first, "l": last, "d": domain})
        .select(
            pl.col("f").str.to_lowercase()
            + "."
            + pl.col("l").str.to_lowercase()
            + pl.int_range(pl.len()).cast(pl.String)
            + "@"
            + pl.col("d")
        )
        .to_series()
    )
