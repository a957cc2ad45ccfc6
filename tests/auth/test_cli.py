"""`medloop users create` and `medloop audit show` against a real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from medloop.auth.models import User
from medloop.cli import _register, app
from medloop.settings import get_settings
from tests.factories import World, auth


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[CliRunner]:
    monkeypatch.setenv("MEDLOOP_DATABASE_URL", db_url)
    monkeypatch.setenv("MEDLOOP_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    _register()
    yield CliRunner()
    get_settings.cache_clear()


def test_users_create(
    cli_env: CliRunner, engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLOOP_NEW_PASSWORD", "a-strong-password")
    result = cli_env.invoke(app, ["users", "create", "nurse-b1", "-r", "clinician", "-f", "CHC-B1"])
    assert result.exit_code == 0, result.output
    assert "created nurse-b1 (clinician)" in result.output
    with Session(engine) as s:
        user = s.scalars(select(User).where(User.username == "nurse-b1")).one()
        assert [f.organisation_id for f in user.facilities] == [world.org_id("CHC-B1")]
        assert user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "create", "x1", "-r", "wizard", "-f", "HUB"], "unknown role"),
        (["users", "create", "x2", "-r", "clinician", "-f", "NOPE"], "unknown organisation"),
        (["users", "create", "doc-a1", "-r", "clinician", "-f", "HUB"], "already exists"),
        (["users", "create", "x3", "-r", "clinician"], "needs at least one facility"),
    ],
)
def test_users_create_errors(
    cli_env: CliRunner, world: World, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("MEDLOOP_NEW_PASSWORD", "a-strong-password")
    result = cli_env.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_audit_show(cli_env: CliRunner, client: object, world: World) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    client.get(f"/api/v1/patients/{world.patients['alice'].id}", headers=auth(client, "doc-a1"))
    result = cli_env.invoke(app, ["audit", "show", "--actor", "doc-a1"])
    assert result.exit_code == 0, result.output
    assert "doc-a1" in result.output and "read" in result.output
    assert str(world.patients["alice"].id)[:8] in result.output
