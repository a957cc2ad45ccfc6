"""The `medloop` command. Each domain contributes its own Typer sub-application."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from medloop.logging import configure_logging
from medloop.settings import get_settings

app = typer.Typer(
    name="medloop",
    help="medloop: whole-course chronic-disease care — network, devices, screening, programmes, FHIR.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default MEDLOOP_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default MEDLOOP_PORT, 8000)."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
) -> None:
    """Serve the API on the configured database."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "medloop.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="warning",
    )


@app.command()
def demo(
    people: int = typer.Option(20_000, min=100, help="Residents in the synthetic region."),
    seed: int = typer.Option(1, help="Random seed of the region."),
    data_dir: Path = typer.Option(Path("demo-data"), help="Where the demo database and files go."),
) -> None:
    """The main job: build a synthetic region, create demo logins, serve. Ctrl-C stops."""
    from medloop.demo import run

    os.environ.setdefault("MEDLOOP_DATABASE_URL", f"sqlite:///{data_dir / 'medloop.db'}")
    get_settings.cache_clear()
    settings = get_settings()
    run(settings, people=people, seed=seed, data_dir=data_dir)


def _store() -> None:
    from medloop.store.cli import app as db_app

    app.add_typer(db_app, name="db")


def _auth() -> None:
    from medloop.auth.cli import audit_app, users_app

    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")


def _sim() -> None:
    from medloop.sim.cli import app as sim_app

    app.add_typer(sim_app, name="sim")


def _devices() -> None:
    from medloop.devices.cli import app as devices_app
    from medloop.devices.cli import ingest_app

    app.add_typer(devices_app, name="devices")
    app.add_typer(ingest_app, name="ingest")


def _screening() -> None:
    from medloop.screening.cli import score, screen

    app.command("score")(score)
    app.command("screen")(screen)


def _programs() -> None:
    from medloop.programs.cli import app as programs_app
    from medloop.programs.cli import export_app, kpi_app

    app.add_typer(programs_app, name="programs")
    app.add_typer(kpi_app, name="kpi")
    app.add_typer(export_app, name="export")


def _fhir() -> None:
    from medloop.fhir.cli import app as fhir_app

    app.add_typer(fhir_app, name="fhir")


@dataclass(frozen=True)
class _Domain:
    commands: dict[str, str]  # top-level command → its help line, as the domain's own code gives it
    add: Callable[[], None]  # imports the domain and adds its commands to `app`


# The domains' top-level commands. Domains add theirs here (one function and one entry each);
# tests/test_cli.py checks that the help lines are the commands' own.
_DOMAINS: tuple[_Domain, ...] = (
    _Domain(
        {
            "score": "Score one person with one model; prints score, category, flags, reasons and model "
            "version.",
            "screen": "Screen a population table with the risk models; prints counts per category per model.",
        },
        _screening,
    ),
    _Domain({"db": "Database schema migrations (Alembic)."}, _store),
    _Domain(
        {"users": "Users and service accounts.", "audit": "The audit trail of patient-data access."}, _auth
    ),
    _Domain({"sim": "Synthetic data: a region with facilities and residents, device readings."}, _sim),
    _Domain(
        {
            "devices": "Connected devices: registry, credentials, broker configuration, dead letters.",
            "ingest": "Ingest device readings from a transport.",
        },
        _devices,
    ),
    _Domain(
        {
            "programs": "Programmes: definitions, events, the engine, time passing.",
            "kpi": "Pre-aggregated programme KPIs.",
            "export": "Exports to national systems.",
        },
        _programs,
    ),
    _Domain({"fhir": "FHIR bulk data: NDJSON import and export."}, _fhir),
)
_BUILT_IN = ("serve", "demo")


def _register(command: str | None = None) -> None:
    """Add the domains' commands to `app`: only the domain that provides `command` when given (each
    domain pulls in its own stack, e.g. Dask or FastAPI, and importing all of them takes seconds),
    else all of them."""
    if command in _BUILT_IN:
        return
    wanted = [d for d in _DOMAINS if command in d.commands]
    for domain in wanted or _DOMAINS:
        domain.add()


def _list_commands() -> None:
    """For `medloop --help` (or an unknown command): every domain command by its help line, without
    importing any domain."""
    for domain in _DOMAINS:
        for name, text in domain.commands.items():
            app.command(name, help=text)(_not_loaded)


def _not_loaded() -> None:  # pragma: no cover - main() loads the domain of a command it runs
    raise SystemExit("internal error: the command's domain was not loaded")


def main() -> None:
    # The root callback takes no options, so the first argument not starting with "-" is the command.
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if command in _BUILT_IN or any(command in d.commands for d in _DOMAINS):
        _register(command)
    else:
        _list_commands()
    app()
