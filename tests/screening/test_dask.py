"""The Dask runner gives exactly the local engine's output (LocalCluster, threads for speed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from distributed import Client, LocalCluster
from polars.testing import assert_frame_equal
from rich.console import Console

from medloop.screening.dask_runner import dask_results
from medloop.screening.engine import local_results, make_plan, select_models
from medloop.screening.frames import InputError, open_source
from medloop.screening.runner import ScreenOptions, run_screen


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.mark.parametrize("fixture", ["population_parquet", "population_csv"])
def test_dask_equals_local(fixture: str, request: pytest.FixtureRequest, client: Client) -> None:
    path: Path = request.getfixturevalue(fixture)
    source = open_source(path)
    plan = make_plan(source.columns, select_models(None))
    local = pl.concat(local_results(source, plan, batch_rows=1000))
    distributed = pl.concat(dask_results(source, plan, client, rows_per_task=700, csv_block_bytes=50_000))
    assert distributed.height == 3000
    assert_frame_equal(distributed, local)


def test_cli_dask_engine_writes_the_same_file(
    population_parquet: Path, client: Client, tmp_path: Path
) -> None:
    console = Console(quiet=True)
    local = ScreenOptions(population_parquet, tmp_path / "local.parquet", batch_rows=1000)
    remote = ScreenOptions(
        population_parquet,
        tmp_path / "dask.parquet",
        engine="dask",
        scheduler=client.scheduler.address,
        batch_rows=1000,
    )
    run_screen(local, console)
    report = run_screen(remote, console)
    assert report.summary.rows == 3000
    assert_frame_equal(
        pl.read_parquet(tmp_path / "dask.parquet"), pl.read_parquet(tmp_path / "local.parquet")
    )


def test_dask_input_errors_reach_the_client(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pl.DataFrame(
        {"person_id": ["a", "b"], "sex": ["M", "M"], "age": ["60", "sixty"], "psa": [1.0, 2.0]}
    ).write_parquet(path)
    source = open_source(path)
    plan = make_plan(source.columns, select_models(["psa"]))
    with pytest.raises(InputError, match="column 'age': expected a whole number, found 'sixty'"):
        list(dask_results(source, plan, client, rows_per_task=100))
