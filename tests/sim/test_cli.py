"""`medloop sim region` end to end on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from medloop.sim.cli import app
from medloop.store import migrate
from medloop.store.engine import make_engine


def test_sim_region_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'medloop.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    out = tmp_path / "population.parquet"
    common = ["region", "--people", "1500", "--facilities", "30", "--out", str(out)]
    args = [*common, "--seed", "2"]
    runner = CliRunner()

    first = runner.invoke(app, [*args, "--database-url", url, "--quiet"])
    assert first.exit_code == 0, first.output
    assert "1500 patients" in first.output and "30 organisations" in first.output
    assert pl.read_parquet(out).height == 1500

    again = runner.invoke(app, [*args, "--database-url", url, "--quiet"])
    assert again.exit_code == 0 and "already present" in again.output

    other = runner.invoke(app, [*common, "--seed", "3", "--database-url", url, "--quiet"])
    assert other.exit_code == 1 and "--replace" in other.output

    bad = runner.invoke(app, ["region", "--facilities", "3", "--no-database", "--out", str(out)])
    assert bad.exit_code != 0 and "at least" in bad.output

    parquet_only = runner.invoke(app, [*args, "--no-database", "--quiet"])
    assert parquet_only.exit_code == 0 and "database" not in parquet_only.output
