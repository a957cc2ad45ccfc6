"""`medloop devices …` (registry, credentials, broker configuration, dead letters) and
`medloop ingest mqtt` (the MQTT subscriber)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson
import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.devices import deadletter, service
from medloop.devices.broker import INGESTER_USERNAME, mosquitto_hash, write_broker_files
from medloop.devices.models import CredentialKind, DeviceKind
from medloop.errors import Problem
from medloop.settings import get_settings
from medloop.store.engine import make_engine, session_scope

app = typer.Typer(
    help="Connected devices: registry, credentials, broker configuration, dead letters.", no_args_is_help=True
)
dead_letter_app = typer.Typer(
    help="Readings that could not be accepted: list and replay.", no_args_is_help=True
)
app.add_typer(dead_letter_app, name="dead-letter")
ingest_app = typer.Typer(help="Ingest device readings from a transport.", no_args_is_help=True)


def _engine() -> Engine:
    return make_engine(get_settings().database_url)


@contextmanager
def _unit_of_work() -> Iterator[Session]:
    """A session committed on success; a client-facing error is printed, not a traceback."""
    try:
        with session_scope(_engine()) as session:
            yield session
    except Problem as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise typer.BadParameter("give a UTC offset, e.g. 2025-03-01T08:00:00+08:00")
    return parsed


@app.command()
def register(
    serial: str,
    kind: DeviceKind = typer.Option(..., help="What the device measures."),
    model: str = typer.Option("", help="Model name."),
    manufacturer: str | None = typer.Option(None, help="Organisation code of the manufacturer (a partner)."),
    firmware: str | None = typer.Option(None),
    service_user: str | None = typer.Option(None, help="Service user the device logs in as over HTTP."),
) -> None:
    """Register a device."""
    with _unit_of_work() as s:
        device = service.register_device(
            s,
            serial,
            kind.value,
            model=model,
            manufacturer_code=manufacturer,
            firmware=firmware,
            service_username=service_user,
        )
        typer.echo(f"registered {device.serial} ({device.kind}) id={device.id}")


@app.command()
def bind(
    serial: str, patient_id: uuid.UUID, start: str | None = typer.Option(None, help="ISO time; default now.")
) -> None:
    """Bind a device to a patient (ends its current binding)."""
    with _unit_of_work() as s:
        binding = service.bind(s, system_principal(), serial, patient_id, _instant(start))
        typer.echo(f"bound {serial} from {binding.start_at.isoformat()}")


@app.command()
def unbind(serial: str, end: str | None = typer.Option(None, help="ISO time; default now.")) -> None:
    """End a device's current binding."""
    with _unit_of_work() as s:
        binding = service.unbind(s, system_principal(), serial, _instant(end))
        typer.echo(f"unbound {serial} at {binding.end_at.isoformat() if binding.end_at else ''}")


@app.command()
def credential(serial: str, kind: CredentialKind = typer.Option(CredentialKind.MQTT)) -> None:
    """Issue a credential; the secret is printed once and stored only as hashes."""
    with _unit_of_work() as s:
        issued = service.issue_credential(s, system_principal(), serial, kind.value)
        typer.echo(f"credential id: {issued.credential.id}")
        if issued.username:
            typer.echo(f"username: {issued.username}")
        typer.echo(f"secret: {issued.secret}")


@app.command()
def revoke(credential_id: uuid.UUID) -> None:
    """Revoke a credential (run broker-config again to drop it from the broker's password file)."""
    with _unit_of_work() as s:
        service.revoke_credential(s, system_principal(), credential_id)
        typer.echo(f"revoked {credential_id}")


@app.command("broker-config")
def broker_config(
    out: Path = typer.Option(Path("mosquitto"), help="Directory for passwd, acl and mosquitto.conf."),
    port: int = typer.Option(1883),
    persistence_dir: Path | None = typer.Option(None, help="Enable broker persistence in this directory."),
    ingester_password: str | None = typer.Option(
        None,
        envvar="MEDLOOP_MQTT_INGESTER_PASSWORD",
        help="Password of the ingester's broker account (default: new).",
    ),
) -> None:
    """Write a Mosquitto password file (live MQTT credentials) and an ACL: each device may publish
    only to medloop/v1/devices/<its serial>/readings; the ingester may read them all."""
    password = ingester_password or secrets.token_urlsafe(24)
    with _unit_of_work() as s:
        entries = service.broker_entries(s, mosquitto_hash(password))
    files = write_broker_files(out, entries, port=port, persistence_dir=persistence_dir)
    typer.echo(
        f"wrote {files.password_file} ({len(entries) - 1} devices), {files.acl_file}, {files.config_file}"
    )
    typer.echo(f"run:      mosquitto -c {files.config_file}")
    if ingester_password is None:
        typer.echo(
            f"ingester: medloop ingest mqtt --broker mqtt://{INGESTER_USERNAME}:{password}@localhost:{port}"
        )


@dead_letter_app.command("list")
def dead_letter_list(
    status: str = typer.Option("open", help="open, replayed or all."),
    reason: str | None = typer.Option(None),
    serial: str | None = typer.Option(None),
    limit: int = typer.Option(100),
    show_payload: bool = typer.Option(False, help="Also print the raw payload (patient data)."),
) -> None:
    """List dead letters, oldest first."""
    with _unit_of_work() as s:
        rows = deadletter.list_dead_letters(
            s, status=None if status == "all" else status, reason=reason, serial=serial, limit=limit
        )
        for r in rows:
            typer.echo(
                f"{r.id}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.channel:<6} {r.format:<8} "
                f"{r.device_serial or '-':<16} {r.reason:<16} {r.detail}"
            )
            if show_payload:
                typer.echo("    " + orjson.dumps(r.payload).decode())
        typer.echo(f"{len(rows)} dead letter(s)")


@dead_letter_app.command("replay")
def dead_letter_replay(
    ids: list[uuid.UUID] = typer.Argument(None, help="Default: every open dead letter."),
) -> None:
    """Run dead letters through the pipeline again (after registering a device, fixing a binding …)."""
    with _unit_of_work() as s:
        report = deadletter.replay(s, system_principal(), ids or None)
    typer.echo(f"replayed {report.replayed}, still failing {report.still_failing}")


@ingest_app.command("mqtt")
def ingest_mqtt(
    broker: str | None = typer.Option(
        None, help="mqtt://user:password@host:port (default: MEDLOOP_MQTT_BROKER)."
    ),
    client_id: str = typer.Option("medloop-ingester", help="Fixed id: the broker keeps the session for it."),
    batch_size: int = typer.Option(1000, min=1),
) -> None:
    """Subscribe to medloop/v1/devices/+/readings (QoS 1, persistent session) and ingest until stopped."""
    from medloop.devices.mqtt import Ingester

    url = broker or get_settings().mqtt_broker
    if not url:
        raise typer.BadParameter("give --broker or set MEDLOOP_MQTT_BROKER")
    ingester = Ingester(_engine(), url, client_id=client_id, batch_size=batch_size)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ingester.run(stop)

    asyncio.run(main())
