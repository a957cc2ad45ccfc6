"""`medloop score` (one person, one model) and `medloop screen` (a population table)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import typer
from rich.console import Console

from medloop.errors import Problem
from medloop.screening.person import score_person
from medloop.screening.runner import ScreenOptions, run_screen, summary_table

INPUT_ERROR = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(INPUT_ERROR)


def score(
    model: str = typer.Argument(..., help="Model name, e.g. china_par (see GET /api/v1/screening)."),
    inputs: str = typer.Option(..., "--json", help="The person's inputs as a JSON object."),
) -> None:
    """Score one person with one model; prints score, category, flags, reasons and model version."""
    try:
        payload = json.loads(inputs)
    except json.JSONDecodeError as exc:
        raise _fail(f"--json is not valid JSON: {exc}") from None
    try:
        result = score_person(model, payload)
    except Problem as exc:
        raise _fail(exc.detail) from None
    typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


def screen(
    input: Path = typer.Argument(..., help="Population table (.parquet or .csv, UTF-8)."),
    out: Path = typer.Option(..., "--out", help="Results file (.parquet or .csv)."),
    models: str = typer.Option(
        "", "--models", help="Comma-separated models (default: the population models)."
    ),
    referrals: Path | None = typer.Option(None, "--referrals", help="Also write who should go where next."),
    engine: str = typer.Option("local", "--engine", help="local or dask."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)."
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="Attach a medloop database: referrals are routed through its care network.",
    ),
    store: bool = typer.Option(
        False,
        "--store",
        help="Store the results as risk assessments (input keyed "
        "by patient_id; sex, age and location come from the patient records).",
    ),
    source: str | None = typer.Option(None, "--source", help="Campaign id recorded on stored assessments."),
    batch_rows: int = typer.Option(500_000, "--batch-rows", min=1, help="Rows per batch (bounds memory)."),
) -> None:
    """Screen a population table with the risk models; prints counts per category per model."""
    console = Console()
    options = ScreenOptions(
        input=input,
        output=out,
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        referrals=referrals,
        engine=engine,
        scheduler=scheduler,
        database_url=database_url,
        store=store,
        source=source,
        batch_rows=batch_rows,
    )
    try:
        report = run_screen(options, console)
    except Problem as exc:
        raise _fail(exc.detail) from None
    except OSError as exc:
        raise _fail(str(exc)) from None
    console.print(summary_table(report.summary))
    console.print(f"results: {out}")
    if referrals:
        console.print(f"referrals: {report.referrals:,} → {referrals}")
    if store:
        console.print(f"stored: {report.stored:,} risk assessments")
