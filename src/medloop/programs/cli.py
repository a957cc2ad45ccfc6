"""`medloop programs …`, `medloop kpi refresh` and `medloop export dhis2`."""

from __future__ import annotations

import json
import uuid
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path

import orjson
import typer
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.programs.definitions import DefinitionError, load_definitions
from medloop.settings import get_settings
from medloop.store.base import utcnow
from medloop.store.engine import make_engine, session_scope

app = typer.Typer(help="Programmes: definitions, events, the engine, time passing.", no_args_is_help=True)
kpi_app = typer.Typer(help="Pre-aggregated programme KPIs.", no_args_is_help=True)
export_app = typer.Typer(help="Exports to national systems.", no_args_is_help=True)


def _session() -> AbstractContextManager[Session]:
    return session_scope(make_engine(get_settings().database_url))


def _period(value: str) -> date:
    from medloop.programs.kpi import parse_period

    try:
        return parse_period(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("list")
def list_programmes() -> None:
    """The programme definitions and their states."""
    for d in load_definitions().values():
        states = ", ".join(f"{s} ({d.stage(s)})" for s in d.states)
        typer.echo(f"{d.id} v{d.version} — {d.title}\n  {states}")


@app.command()
def validate(
    directory: Path = typer.Argument(None, help="A folder of definition files (default: the packaged ones)."),
) -> None:
    """Check definition files; prints file:line: reason for the first problem."""
    load_definitions.cache_clear()
    try:
        found = load_definitions(str(directory) if directory else None)
    except DefinitionError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{len(found)} definition(s) valid: {', '.join(sorted(found))}")


@app.command()
def ingest(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON lines, one event per line."),
) -> None:
    """Store events from a file (id, patient_id, kind, effective_at, payload[, enrolment_id, facility_id])
    and apply them. Events for unknown patients are kept until the patient exists."""
    from medloop.programs.service import NewEvent, ingest_events, process_pending

    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            at = datetime.fromisoformat(doc["effective_at"])
            events.append(
                NewEvent(
                    str(doc["id"]),
                    uuid.UUID(doc["patient_id"]),
                    str(doc["kind"]),
                    at,
                    dict(doc.get("payload") or {}),
                    source="import",
                    enrolment_id=uuid.UUID(doc["enrolment_id"]) if doc.get("enrolment_id") else None,
                    facility_id=uuid.UUID(doc["facility_id"]) if doc.get("facility_id") else None,
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            typer.echo(f"{path.name}:{number}: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
    with _session() as session:
        stored = ingest_events(session, events, "cli")
        stats = process_pending(session, system_principal())
    typer.echo(f"stored {len(stored)} new event(s) of {len(events)}; {json.dumps(stats.__dict__)}")


@app.command()
def sync(
    since: datetime = typer.Option(None, help="Backfill from this time (default: since the last sync)."),
) -> None:
    """Turn new screening results, device alerts and home BP readings into events and apply them."""
    from medloop.programs import feeds
    from medloop.programs.service import process_pending, retry_unknown_patients

    with _session() as session:
        counts = {
            "screening_results": feeds.sync_screening(session, since),
            "device_alerts": feeds.sync_device_alerts(session, since),
            "home_bp": feeds.sync_home_bp(session, since),
            "retried_unknown_patient": retry_unknown_patients(session),
        }
        stats = process_pending(session, system_principal())
    typer.echo(json.dumps(counts | {"processed": stats.__dict__}))


@app.command()
def process() -> None:
    """Apply pending events (and those kept for patients who now exist)."""
    from medloop.programs.service import process_pending, retry_unknown_patients

    with _session() as session:
        retried = retry_unknown_patients(session)
        stats = process_pending(session, system_principal())
    typer.echo(json.dumps({"retried_unknown_patient": retried} | stats.__dict__))


@app.command()
def tick(until: datetime = typer.Option(None, help="Let time pass until then (default: now, UTC).")) -> None:
    """Let time pass: fire every timer due by then (e.g. the end of a lifestyle trial)."""
    from medloop.programs.service import advance_time

    moment = until or utcnow()
    if moment.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2026-10-31T00:00:00+00:00")
    with _session() as session:
        fired = advance_time(session, moment)
    typer.echo(f"{fired} timer tick(s) applied")


@kpi_app.command()
def refresh(
    period: str = typer.Option(None, help="The month, YYYY-MM (default: the current month)."),
    months: int = typer.Option(1, min=1, max=120, help="This many months, ending with --period."),
) -> None:
    """Recompute the KPI table for a month (or several)."""
    import time

    from medloop.programs.definitions import add_months
    from medloop.programs.kpi import refresh as refresh_month

    today = utcnow().date()
    last = _period(period) if period else date(today.year, today.month, 1)
    for back in range(months - 1, -1, -1):
        moment = add_months(datetime(last.year, last.month, 1), -back)
        month = date(moment.year, moment.month, 1)
        started = time.perf_counter()
        with _session() as session:
            written = refresh_month(session, month)
        typer.echo(f"{month:%Y-%m}: {written} values in {time.perf_counter() - started:.2f} s")


@export_app.command("dhis2")
def export_dhis2(
    period: str = typer.Option(..., help="The month, YYYY-MM."),
    mapping: Path = typer.Option(
        None, exists=True, dir_okay=False, help="Mapping YAML (default: the packaged one)."
    ),
    out: Path = typer.Option(None, help="Write here (default: standard output)."),
) -> None:
    """Write a DHIS2 dataValueSets JSON of the month's KPI values."""
    from medloop.programs.dhis2 import MappingError, data_value_set, load_mapping

    try:
        spec = load_mapping(mapping)
    except MappingError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    with _session() as session:
        result = data_value_set(session, _period(period), spec)
    text = json.dumps(result.document, ensure_ascii=False, indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(
            f"{result.values} data values written to {out} ({result.skipped_units} without an org unit)",
            err=True,
        )
    else:
        typer.echo(text)
