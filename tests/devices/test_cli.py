"""`medloop devices …` against a real database: registry, credentials, broker-config, dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from medloop.auth.principal import system_principal
from medloop.devices.cli import app
from medloop.devices.ingest import Submitter, ingest
from medloop.settings import get_settings
from medloop.store.base import utcnow
from tests.factories import World


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[CliRunner]:
    monkeypatch.setenv("MEDLOOP_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_registry_credentials_and_broker_config(cli: CliRunner, world: World, tmp_path: Path) -> None:
    assert "registered CLI-1" in run(
        cli, "register", "CLI-1", "--kind", "bp_monitor", "--manufacturer", "HUB"
    )
    assert "already registered" in run(cli, "register", "CLI-1", "--kind", "bp_monitor", code=1)
    start = (utcnow() - timedelta(days=1)).isoformat()
    assert "bound CLI-1" in run(cli, "bind", "CLI-1", str(world.patients["alice"].id), "--start", start)
    out = run(cli, "credential", "CLI-1", "--kind", "mqtt")
    assert "username: CLI-1" in out and "secret: " in out
    cred_id = out.split("credential id: ")[1].split()[0]
    out = run(cli, "broker-config", "--out", str(tmp_path / "mq"), "--port", "1884")
    passwd = (tmp_path / "mq" / "passwd").read_text()
    assert passwd.startswith("medloop-ingester:$7$") and "\nCLI-1:$7$" in passwd
    assert "mqtt://medloop-ingester:" in out
    assert "listener 1884" in (tmp_path / "mq" / "mosquitto.conf").read_text()
    run(cli, "revoke", cred_id)
    run(cli, "broker-config", "--out", str(tmp_path / "mq"), "--ingester-password", "x" * 12)
    assert "CLI-1" not in (tmp_path / "mq" / "passwd").read_text()
    assert "unbound CLI-1" in run(cli, "unbind", "CLI-1")


def test_dead_letter_list_and_replay(cli: CliRunner, engine: Engine, world: World) -> None:
    reading = {
        "device": "LATE-1",
        "type": "heart_rate",
        "value": 70,
        "unit": "/min",
        "at": (utcnow() - timedelta(hours=1)).isoformat(),
    }
    with Session(engine) as s:
        ingest(s, {"readings": [reading]}, channel="http", submitter=Submitter(system_principal()))
        s.commit()
    out = run(cli, "dead-letter", "list", "--show-payload")
    assert "LATE-1" in out and "unknown_device" in out and '"value":70' in out and "1 dead letter(s)" in out
    assert "replayed 0, still failing 1" in run(cli, "dead-letter", "replay")
    run(cli, "register", "LATE-1", "--kind", "multi")
    run(
        cli,
        "bind",
        "LATE-1",
        str(world.patients["bob"].id),
        "--start",
        (utcnow() - timedelta(days=1)).isoformat(),
    )
    assert "replayed 1, still failing 0" in run(cli, "dead-letter", "replay")
    assert "0 dead letter(s)" in run(cli, "dead-letter", "list")
    assert "1 dead letter(s)" in run(cli, "dead-letter", "list", "--status", "all")
