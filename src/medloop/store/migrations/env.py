"""Alembic environment: the URL comes from the caller's config (medloop.store.migrate) or settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from medloop.settings import get_settings
from medloop.store.engine import make_engine
from medloop.store.registry import load_all_models

target_metadata = load_all_models()
config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
