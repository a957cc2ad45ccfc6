"""The `medloop` command. Each domain contributes its own Typer sub-application."""

from __future__ import annotations

import os
from pathlib import Path

import typer
import uvicorn

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


def _register() -> None:
    from medloop.auth.cli import audit_app, users_app
    from medloop.store.cli import app as db_app

    app.add_typer(db_app, name="db")
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    from medloop.sim.cli import app as sim_app

    app.add_typer(sim_app, name="sim")
    # Domains add their commands below (one import and one line each).
    from medloop.devices.cli import app as devices_app
    from medloop.devices.cli import ingest_app

    app.add_typer(devices_app, name="devices")
    app.add_typer(ingest_app, name="ingest")
    from medloop.screening.cli import score, screen

    app.command("score")(score)
    app.command("screen")(screen)
    from medloop.programs.cli import app as programs_app
    from medloop.programs.cli import export_app, kpi_app

    app.add_typer(programs_app, name="programs")
    app.add_typer(kpi_app, name="kpi")
    app.add_typer(export_app, name="export")
    from medloop.fhir.cli import app as fhir_app

    app.add_typer(fhir_app, name="fhir")


def main() -> None:
    _register()
    app()
