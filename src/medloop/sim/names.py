"""Synthetic Chinese names, drawn vectorised from `data/names.yaml` (surname weights and common
given-name characters)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from medloop.sim.region import load_yaml


@dataclass(frozen=True)
class NameTables:
    surnames: pl.Series
    surname_cdf: np.ndarray
    # Given-name characters: male ones, then female ones, then "" (no second character).
    characters: pl.Series
    n_male: int
    n_female: int
    two_character_share: float


@cache
def name_tables() -> NameTables:
    spec = load_yaml("names.yaml")
    listed = list(spec["surnames"])
    tail = [s for s in spec["tail_surnames"] if s not in spec["surnames"]]
    listed_weights = [float(spec["surnames"][s]) for s in listed]
    remainder = max(100.0 - sum(listed_weights), 0.0)
    surnames = listed + tail
    weights = np.array(listed_weights + [remainder / len(tail)] * len(tail))
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    male = list(spec["given"]["male"])
    female = list(spec["given"]["female"])
    return NameTables(
        surnames=pl.Series("family_name", surnames, dtype=pl.String),
        surname_cdf=cdf,
        characters=pl.Series("c", [*male, *female, ""], dtype=pl.String),
        n_male=len(male),
        n_female=len(female),
        two_character_share=float(spec["given"]["two_character_share"]["value"]),
    )


def draw_names(male: np.ndarray, u: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """Family and given names for people with sex `male` (bool), from four uniforms per person
    (`u` has shape (4, n))."""
    t = name_tables()
    family_idx = np.searchsorted(t.surname_cdf, u[0], side="right")
    family = t.surnames.gather(pl.Series(family_idx, dtype=pl.UInt32))

    def char(ui: np.ndarray) -> np.ndarray:
        return np.where(
            male,
            np.minimum((ui * t.n_male).astype(np.int64), t.n_male - 1),
            t.n_male + np.minimum((ui * t.n_female).astype(np.int64), t.n_female - 1),
        )

    blank = t.n_male + t.n_female
    first = char(u[1])
    second = np.where(u[3] < t.two_character_share, char(u[2]), blank)
    given = pl.select(
        pl.concat_str(
            [
                pl.lit(t.characters.gather(pl.Series(first, dtype=pl.UInt32))),
                pl.lit(t.characters.gather(pl.Series(second, dtype=pl.UInt32))),
            ]
        ).alias("given_name")
    ).to_series()
    return family.rename("family_name"), given
