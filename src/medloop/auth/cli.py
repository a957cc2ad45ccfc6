"""`medloop users …` and `medloop audit …`."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from medloop.auth.audit import audit_query
from medloop.auth.service import create_user
from medloop.errors import Problem
from medloop.settings import get_settings
from medloop.store.engine import make_engine, session_scope

users_app = typer.Typer(help="Users and service accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of patient-data access.", no_args_is_help=True)


@users_app.command("create")
def users_create(
    username: str,
    role: list[str] = typer.Option(..., "--role", "-r", help="Role; repeat for several."),
    facility: list[str] = typer.Option([], "--facility", "-f", help="Organisation code; repeat for several."),
    service: bool = typer.Option(False, "--service", help="A service or device (client-credentials grant)."),
    display_name: str = typer.Option("", "--name"),
) -> None:
    """Create a user. The password is read from MEDLOOP_NEW_PASSWORD or asked for (never an argument)."""
    password = os.environ.get("MEDLOOP_NEW_PASSWORD") or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    try:
        with session_scope(make_engine(get_settings().database_url)) as session:
            user = create_user(
                session, username, password, role, facility, display_name=display_name, is_service=service
            )
            typer.echo(f"created {user.username} ({', '.join(user.roles)}) id={user.id}")
    except Problem as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc


@audit_app.command("show")
def audit_show(
    patient: uuid.UUID | None = typer.Option(None, "--patient", help="Only this patient's records."),
    actor: str | None = typer.Option(None, "--actor", help="Only this user's actions."),
    since: datetime | None = typer.Option(None, "--since", help="ISO time, UTC if no zone."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000),
) -> None:
    """Show the newest audit records (who, what, which patient, when, from where, why)."""
    since_utc = None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC))
    table = Table("at (UTC)", "actor", "action", "resource", "patient", "purpose", "source", "outcome")
    with session_scope(make_engine(get_settings().database_url)) as session:
        for e in session.scalars(audit_query(patient_id=patient, actor=actor, since=since_utc).limit(limit)):
            table.add_row(
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                f"{e.resource_type}/{e.resource_id or ''}",
                str(e.patient_id or ""),
                e.purpose,
                e.source or "",
                e.outcome,
            )
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the columns
        console = Console(width=200)
    console.print(table)
