"""`medloop db …`: schema migrations."""

from __future__ import annotations

import typer
from alembic import command

from medloop.settings import get_settings
from medloop.store import migrate
from medloop.store.engine import make_engine

app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("heads")) -> None:
    """Upgrade the schema (default: to the newest revision)."""
    engine = make_engine(get_settings().database_url)
    migrate.upgrade(engine, revision)
    typer.echo(f"database at revision {migrate.current(engine)}")


@app.command()
def downgrade(revision: str = typer.Argument("base")) -> None:
    """Downgrade the schema (default: remove everything)."""
    engine = make_engine(get_settings().database_url)
    migrate.downgrade(engine, revision)
    typer.echo(f"database at revision {migrate.current(engine) or 'base'}")


@app.command()
def current() -> None:
    """Print the schema revision of the configured database."""
    typer.echo(migrate.current(make_engine(get_settings().database_url)) or "base (empty)")


@app.command()
def revision(message: str = typer.Option(..., "-m", help="What the migration does.")) -> None:
    """Autogenerate a migration from the difference between the models and the database (developers)."""
    command.revision(migrate.alembic_config(get_settings().database_url), message=message, autogenerate=True)
