"""One `medloop screen` run: input → results file, summary, referrals, and (against the database)
stored risk assessments, on the local engine or a Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.errors import BadRequest
from medloop.network.routing import Network
from medloop.screening.engine import (
    DEFAULT_BATCH_ROWS,
    Plan,
    Summary,
    local_results,
    make_plan,
    select_models,
)
from medloop.screening.frames import FrameWriter, InputError, Source, open_source
from medloop.screening.referrals import Referrals
from medloop.screening.service import DatabasePopulation, plan_for_patients
from medloop.store.base import utcnow
from medloop.store.engine import make_engine


@dataclass(frozen=True)
class ScreenOptions:
    input: Path
    output: Path
    models: tuple[str, ...] = ()  # empty: the population models
    referrals: Path | None = None
    engine: str = "local"  # or "dask"
    scheduler: str | None = None  # Dask scheduler address; None: a local cluster
    database_url: str | None = None
    store: bool = False  # store results as risk assessments (input keyed by patient_id)
    source: str | None = None  # campaign id recorded on stored assessments
    batch_rows: int = DEFAULT_BATCH_ROWS


@dataclass
class RunReport:
    plan: Plan
    summary: Summary
    referrals: int = 0
    stored: int = 0
    notes: list[str] = field(default_factory=list)


def _results(
    options: ScreenOptions, source: Source, plan: Plan, stack: ExitStack, db: DatabasePopulation | None
) -> Iterator[pl.DataFrame]:
    if options.engine == "local":
        # The writers take each batch on threads of their own while the next one is screened.
        return local_results(source, plan, options.batch_rows, prepare=db.prepare if db else None)
    from distributed import Client, LocalCluster

    from medloop.screening.dask_runner import dask_results

    if options.scheduler:
        client = stack.enter_context(Client(options.scheduler))
    else:
        client = stack.enter_context(Client(stack.enter_context(LocalCluster())))
    return dask_results(source, plan, client, options.batch_rows)


def run_screen(options: ScreenOptions, console: Console) -> RunReport:
    """Screen `options.input`; raises a `Problem` (e.g. `InputError`) for input that cannot be screened."""
    if options.engine not in ("local", "dask"):
        raise BadRequest(f"unknown engine {options.engine!r}; use local or dask")
    if options.store and not options.database_url:
        raise BadRequest("--store needs --database-url")
    if options.store and options.engine != "local":
        raise BadRequest("--store runs on the local engine (it completes rows from the patient records)")
    source = open_source(options.input)
    models = select_models(options.models)
    plan = plan_for_patients(source.columns, models) if options.store else make_plan(source.columns, models)
    report = RunReport(plan, Summary(plan.models))
    for name, lacking in plan.disabled.items():
        report.notes.append(f"{name} disabled: the input lacks {', '.join(lacking)}")
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]")

    with ExitStack() as stack:
        session: Session | None = None
        network: Network | None = None
        db: DatabasePopulation | None = None
        if options.database_url:
            engine = make_engine(options.database_url)
            stack.callback(engine.dispose)
            session = stack.enter_context(Session(engine, expire_on_commit=False))
            network = Network.load(session)
            if options.store:
                principal = system_principal(purpose="public_health")
                db = DatabasePopulation(
                    session, principal, utcnow().date(), options.source or options.input.name
                )
        writer = stack.enter_context(FrameWriter(options.output))
        referral_writer = stack.enter_context(FrameWriter(options.referrals)) if options.referrals else None
        referrals = Referrals(plan, network) if options.referrals else None
        if referrals and network and not referrals.routable:
            console.print("[yellow]referrals are not routed: the input has no latitude/longitude[/yellow]")
        progress = stack.enter_context(
            Progress(
                TextColumn("screening"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
        )
        task = progress.add_task("screening", total=source.rows)
        output_columns = plan.output_columns()
        for results in _results(options, source, plan, stack, db):
            writer.write(results.select(output_columns))
            report.summary.add(results)
            if referrals and referral_writer:
                routed = referrals.of(results)
                referral_writer.write(routed)
                report.referrals += routed.height
            if db:
                report.stored += db.store(results, plan.models)
            progress.advance(task, results.height)
        if report.summary.rows == 0:
            raise InputError(f"{options.input.name} has no rows")
        if session is not None:
            session.commit()
    return report


def summary_table(summary: Summary) -> Table:
    table = Table(title=f"Screened {summary.rows:,} rows")
    table.add_column("model")
    table.add_column("category")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    last = None
    for model, category, n in summary.table():
        share = f"{100 * n / summary.rows:.1f} %" if summary.rows else "–"
        table.add_row(model if model != last else "", category, f"{n:,}", share)
        last = model
    return table
