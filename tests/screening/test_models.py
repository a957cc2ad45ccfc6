"""Migration 0003 creates exactly the risk_assessment table of the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from medloop.store.registry import load_all_models


def _mine(diff: object) -> bool:
    text = repr(diff)
    return "risk_assessment" in text


def test_migration_matches_model(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), load_all_models())
    assert [d for d in diff if _mine(d)] == []
