"""Migrations run up and down on both databases, and `head` matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from medloop.store import migrate
from medloop.store.registry import load_all_models


def test_head_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), load_all_models())
    assert diff == []


def test_down_to_base_and_up_again(engine: Engine) -> None:
    tables = set(load_all_models().tables)
    migrate.downgrade(engine, "base")
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert remaining == set()
    migrate.upgrade(engine)
    assert tables <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar_one() == migrate.current(
            engine
        )
