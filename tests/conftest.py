"""Test fixtures. Database tests run on both SQLite and PostgreSQL: the `engine` fixture is
parametrised over the two. PostgreSQL comes from MEDLOOP_TEST_PG_URL (an admin URL; each pytest
session creates and drops its own database). Without it the PostgreSQL cases are skipped, unless
MEDLOOP_REQUIRE_SERVICES=1 (set by .ci/run), where they fail."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from medloop.store import migrate
from medloop.store.engine import make_engine
from medloop.store.registry import load_all_models
from tests.factories import World, make_client, standard_world

REQUIRE_SERVICES = os.environ.get("MEDLOOP_REQUIRE_SERVICES") == "1"
# Cheap password hashing in tests (production default: 3 passes over 64 MiB).
os.environ.setdefault("MEDLOOP_ARGON2_TIME_COST", "1")
os.environ.setdefault("MEDLOOP_ARGON2_MEMORY_KIB", "64")


def require_service(what: str) -> None:
    """Skip (locally) or fail (in CI) when a real service the test needs is missing."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    admin_url = os.environ.get("MEDLOOP_TEST_PG_URL")
    if not admin_url:
        require_service("PostgreSQL (MEDLOOP_TEST_PG_URL)")
    name = f"medloop_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in load_all_models().sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database: a copy of the SQLite template, or the session's PostgreSQL
    database truncated after the test."""
    if request.param == "sqlite":
        path = tmp_path / "medloop.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        eng = make_engine(f"sqlite:///{path}")
        yield eng
        eng.dispose()
    else:
        eng = request.getfixturevalue("pg_engine")
        _truncate_all(eng)
        yield eng
        _truncate_all(eng)


@pytest.fixture
def db_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def world(engine: Engine) -> World:
    """The standard small network with patients and users (see tests/factories.py)."""
    with Session(engine, expire_on_commit=False) as s:
        return standard_world(s)


@pytest.fixture
def client(engine: Engine, world: World) -> Iterator[TestClient]:
    """An API client on the app bound to `engine`, with the standard world loaded."""
    with make_client(engine) as c:
        yield c
