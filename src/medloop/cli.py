"""The `medloop` command. Each domain contributes its own Typer sub-application."""

from __future__ import annotations

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


def _register() -> None:
    from medloop.store.cli import app as db_app

    app.add_typer(db_app, name="db")
    from medloop.sim.cli import app as sim_app

    app.add_typer(sim_app, name="sim")
    # Domains add their commands below (one import and one line each).
    from medloop.screening.cli import score, screen

    app.command("score")(score)
    app.command("screen")(screen)


def main() -> None:
    _register()
    app()
