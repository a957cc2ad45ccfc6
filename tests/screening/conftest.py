"""A small random population table (contract columns, some values missing) as Parquet and CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medloop.screening.contract import COLUMNS


def make_population(n: int, seed: int = 1, missing: float = 0.03) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "person_id": [f"p{i:06d}" for i in range(n)],
        "sex": rng.choice(["M", "F"], n),
        "age": rng.integers(18, 95, n),
        "sbp": rng.normal(132, 20, n).round(),
        "dbp": rng.normal(80, 12, n).round(),
        "tc_mmol": rng.normal(4.9, 1.0, n).clip(2, 12).round(2),
        "hdl_mmol": rng.normal(1.3, 0.3, n).clip(0.5, 3).round(2),
        "waist_cm": rng.normal(84, 10, n).round(1),
        "height_cm": rng.normal(162, 8, n).round(1),
        "weight_kg": rng.normal(63, 11, n).clip(35, 150).round(1),
        "smoking": rng.choice(["never", "former", "current"], n, p=[0.6, 0.1, 0.3]),
        "pack_years": rng.gamma(2, 10, n).round(1),
        "years_since_quit": rng.uniform(0, 30, n).round(1),
        "fpg_mmol": rng.lognormal(1.7, 0.18, n).round(1),
        "hba1c_pct": rng.normal(5.7, 0.7, n).round(1),
        "dyspnea": rng.choice(["none", "exertion", "flat"], n, p=[0.7, 0.2, 0.1]),
        "passive_smoking_years": rng.uniform(0, 40, n).round(),
        "pg_ratio": rng.normal(6, 2, n).clip(0.5, 20).round(2),
        "gastrin17": rng.lognormal(1, 0.8, n).round(2),
        "psa": rng.lognormal(0.3, 0.9, n).round(2),
        "latitude": rng.uniform(29.5, 30.3, n),
        "longitude": rng.uniform(118.8, 120.3, n),
    }
    for c in COLUMNS:
        if c.kind == "bool":
            columns[c.name] = rng.random(n) < 0.2
    frame = pl.DataFrame(columns)
    holes = {c.name: rng.random(n) < missing for c in COLUMNS[1:]}
    return frame.with_columns(
        pl.when(pl.Series(mask)).then(None).otherwise(pl.col(name)).alias(name)
        for name, mask in holes.items()
    ).select([c.name for c in COLUMNS] + ["latitude", "longitude"])


@pytest.fixture(scope="session")
def population() -> pl.DataFrame:
    return make_population(3000)


@pytest.fixture(scope="session")
def population_parquet(population: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("population") / "people.parquet"
    population.write_parquet(path, row_group_size=500)
    return path


@pytest.fixture(scope="session")
def population_csv(population: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("population") / "people.csv"
    population.write_csv(path)
    return path
