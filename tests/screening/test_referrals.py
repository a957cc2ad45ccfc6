"""Referrals: who goes where next, routed to the nearest facility with the capability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.network.routing import Network
from medloop.screening.referrals import RULES, nearest
from medloop.screening.runner import ScreenOptions, run_screen
from tests.factories import build_network


@pytest.fixture
def network(session: Session) -> Network:
    build_network(session)
    session.commit()
    return Network.load(session)


@pytest.mark.parametrize("capability", ["primary_care", "ldct", "spirometry", "lab", "cath_lab"])
def test_vectorised_nearest_is_network_nearest(network: Network, capability: str) -> None:
    rng = np.random.default_rng(7)
    lat, lon = rng.uniform(29.0, 31.0, 400), rng.uniform(118.0, 121.0, 400)
    lat[:3], lon[:3] = 30.05, 119.95  # exactly at CNTY-A
    lat[3] = np.nan
    facilities = sorted((f for f in network.facilities if capability in f.capabilities), key=lambda f: f.code)
    index, km = nearest(facilities, lat, lon)
    for i in range(len(lat)):
        route = None if np.isnan(lat[i]) else network.nearest(lat[i], lon[i], capability)
        if route is None:
            assert index[i] == -1 and np.isnan(km[i])
        else:
            assert facilities[index[i]].code == route.facility.code
            assert km[i] == pytest.approx(route.distance_km, abs=1e-9)


def test_screen_writes_routed_referrals(
    engine: Engine, network: Network, population_parquet: Path, tmp_path: Path
) -> None:
    options = ScreenOptions(
        population_parquet,
        tmp_path / "out.parquet",
        referrals=tmp_path / "referrals.csv",
        database_url=engine.url.render_as_string(hide_password=False),
        batch_rows=1000,
    )
    report = run_screen(options, Console(quiet=True))
    referrals = pl.read_csv(tmp_path / "referrals.csv")
    results = pl.read_parquet(tmp_path / "out.parquet")
    assert report.referrals == referrals.height > 0
    assert referrals.columns == [
        "person_id",
        "action",
        "capability",
        "model",
        "category",
        "facility_code",
        "facility_name",
        "distance_km",
    ]
    for rule in RULES:
        if f"{rule.model}_category" not in results.columns:
            continue
        who = results.filter(pl.col(f"{rule.model}_category") == rule.category).get_column("person_id")
        sent = referrals.filter(pl.col("model") == rule.model)
        assert sorted(sent.get_column("person_id").to_list()) == sorted(who.to_list())
        assert set(sent.get_column("capability")) == {rule.capability}
    people = pl.read_parquet(population_parquet).select("person_id", "latitude", "longitude")
    sample = referrals.join(people, on="person_id").head(200)
    for row in sample.iter_rows(named=True):
        route = network.nearest(row["latitude"], row["longitude"], row["capability"])
        assert route is not None and row["facility_code"] == route.facility.code


def test_referrals_without_a_network_are_unrouted(population_parquet: Path, tmp_path: Path) -> None:
    options = ScreenOptions(
        population_parquet, tmp_path / "out.parquet", referrals=tmp_path / "ref.parquet", models=("copd_sq",)
    )
    run_screen(options, Console(quiet=True))
    referrals = pl.read_parquet(tmp_path / "ref.parquet")
    assert referrals.height > 0 and referrals.get_column("facility_code").null_count() == referrals.height
    assert set(referrals.get_column("action")) == {"spirometry"}
