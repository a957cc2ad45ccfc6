"""`medloop sim …`: synthetic data. This module owns the `sim` Typer group; other simulators add
their commands to `app` from their own modules (e.g. `@app.command("devices")`), so that the group
stays a group (its callback keeps Typer from collapsing a single command into `medloop sim`)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from medloop.settings import get_settings
from medloop.sim import DEFAULT_AS_OF, DEFAULT_CHUNK_ROWS

app = typer.Typer(
    help="Synthetic data: a region with facilities and residents, device readings.", no_args_is_help=True
)


@app.callback()
def _sim() -> None:
    """Synthetic data for demos, tests and benchmarks (no real person's data)."""


def _parse_date(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter("expected a date as YYYY-MM-DD") from None


@app.command("region")
def region(
    people: int = typer.Option(20_000, "--people", min=0, help="Number of adult residents."),
    facilities: int | None = typer.Option(
        None, "--facilities", help="Number of facilities (default: about one per 800 residents)."
    ),
    seed: int = typer.Option(1, "--seed", help="Random seed: the same seed gives the same region."),
    out: Path | None = typer.Option(
        Path("population.parquet"), "--out", help="Parquet population table (screening input contract)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Database to write to (default: MEDLOOP_DATABASE_URL)."
    ),
    no_database: bool = typer.Option(False, "--no-database", help="Write only the Parquet table."),
    replace: bool = typer.Option(
        False, "--replace", help="Replace a different simulated region already in the database."
    ),
    as_of: str = typer.Option(
        DEFAULT_AS_OF.isoformat(), "--as-of", help="Reference date for ages (YYYY-MM-DD); part of the seed."
    ),
    chunk_size: int = typer.Option(
        DEFAULT_CHUNK_ROWS, "--chunk-size", min=1000, help="Rows per chunk (memory bound)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Build a synthetic region: tiered facilities and residents with correlated risk factors.
    Writes the Parquet population table and the database (organisations, patients, national-ID
    identifiers). Re-running with the same arguments is a no-op; a different region needs --replace."""
    from medloop.sim.region import default_facility_count, minimum_facilities
    from medloop.sim.writer import RegionError, build_region_outputs

    reference = _parse_date(as_of)
    n_facilities = facilities if facilities is not None else default_facility_count(people)
    if n_facilities < minimum_facilities():
        raise typer.BadParameter(f"must be at least {minimum_facilities()}", param_hint="--facilities")
    settings = get_settings()
    url = None if no_database else (database_url or settings.database_url)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]residents"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    try:
        with progress:
            task = progress.add_task("residents", total=people)
            summary = build_region_outputs(
                people,
                n_facilities,
                seed,
                as_of=reference,
                out=out,
                database_url=url,
                identifier_key=settings.identifier_key,
                replace=replace,
                chunk_size=chunk_size,
                on_chunk=lambda rows: progress.advance(task, rows),
            )
    except RegionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    tiers = ", ".join(f"{tier} {count}" for tier, count in sorted(summary.tiers.items()))
    typer.echo(f"region: {summary.facilities} facilities ({tiers}); {summary.people} residents; seed {seed}")
    if summary.parquet_path:
        typer.echo(f"parquet: {summary.parquet_path}")
    if summary.database:
        if summary.status == "already present":
            typer.echo(f"database: {summary.database}: this region is already present, nothing written")
        else:
            replaced = (
                f" (replaced a region of {summary.replaced_patients} patients)"
                if summary.replaced_patients
                else ""
            )
            typer.echo(
                f"database: {summary.database}: {summary.facilities_written} organisations, "
                f"{summary.patients_written} patients, {summary.identifiers_written} identifiers{replaced}"
            )
    rate = summary.people / summary.seconds if summary.seconds else 0.0
    typer.echo(f"time: {summary.seconds:.1f} s ({rate:,.0f} residents/s)")


from medloop.sim import devices as _devices  # noqa: E402, F401  (registers `medloop sim devices`)
