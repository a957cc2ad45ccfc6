"""`medloop fhir import DIR` and `medloop fhir export DIR`: bulk NDJSON, as the local operator."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.fhir import bulk
from medloop.network.models import Organisation
from medloop.settings import get_settings
from medloop.store.engine import make_engine, session_factory

app = typer.Typer(help="FHIR bulk data: NDJSON import and export.", no_args_is_help=True)


@app.command("import")
def import_(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder of *.ndjson files"),
    pattern: str = typer.Option("*.ndjson", help="Which files to read"),
) -> None:
    """Import every NDJSON file in DIRECTORY (one FHIR resource per line). Observations go through
    the devices pipeline; bad lines are listed with file and line number, good ones are kept."""
    sessions = session_factory(make_engine(get_settings().database_url))
    files = sorted(directory.glob(pattern))
    if not files:
        raise typer.BadParameter(f"no {pattern} files in {directory}")
    started = datetime.now()
    report = bulk.import_files(sessions, system_principal("operations"), files)
    seconds = (datetime.now() - started).total_seconds()
    for rtype, n in sorted(report.created.items()):
        typer.echo(f"{rtype}: {n} created")
    typer.echo(f"already present: {report.duplicates}; bad lines: {len(report.errors)}; {seconds:.1f} s")
    for error in report.errors[:200]:
        typer.echo(f"  {error.file}:{error.line}: {error.message}", err=True)
    if report.errors:
        raise typer.Exit(1)


@app.command("export")
def export(
    directory: Path = typer.Argument(..., file_okay=False, help="Folder to write <Type>.ndjson into"),
    types: str = typer.Option("", "--type", help="Comma-separated resource types (default: all)"),
    since: str = typer.Option("", help="Only resources changed since this instant"),
    group: str = typer.Option("", help="A facility (organisation code or id): its patients only"),
) -> None:
    """Export as NDJSON, like $export at system level (or Group level with --group)."""
    sessions = session_factory(make_engine(get_settings().database_url))
    principal = system_principal("operations")
    params = {k: v for k, v in {"_type": types, "_since": since}.items() if v}
    with sessions() as read, sessions() as audit:
        group_id = _group(read, group) if group else None
        spec = bulk.export_spec(principal, "group" if group_id else "system", params, group_id)
        files = bulk.export_to(directory, read, audit, principal, spec)
    for f in files:
        typer.echo(f"{f.type}: {f.count} -> {f.path}")


def _group(session: Session, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        found = session.scalar(select(Organisation.id).where(Organisation.code == value))
        if found is None:
            raise typer.BadParameter(f"no organisation {value!r}") from None
        return found
