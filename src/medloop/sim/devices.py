"""The device simulator (`medloop sim devices`): realistic readings for the patients in the
database, streamed over HTTP or MQTT, with faults injected at configurable rates so that the
pipeline's defences are exercised.

Physiology (illustrative, not clinical data): each patient has a baseline BP, heart rate, SpO2 and
fasting glucose; BP follows a diurnal curve in local time (night-time dip, morning surge), every
value carries measurement noise, and treated patients' BP falls towards target over the run.

Faults: duplicates (the same message again), late delivery (held back, then sent out of order),
wrong units (a unit the pipeline does not know), impossible values, clock skew (an effective time
in the future) and unknown devices. Every fault is counted, so a run can be checked against the
dead-letter table.

HTTP runs in-process by default (the real FastAPI app through an ASGI transport, no server needed:
this is what `make demo` uses); `--url` posts to a running server instead. MQTT needs a broker.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.models import Role, User
from medloop.auth.principal import system_principal
from medloop.people.models import Patient
from medloop.settings import Settings, get_settings
from medloop.sim.cli import app
from medloop.store.base import utcnow
from medloop.store.engine import make_engine, session_scope

# The HTTP client, the device service and user management are imported where they are used: this
# module registers `medloop sim devices`, and `medloop sim region` should not pay for them.
if TYPE_CHECKING:
    import httpx

GATEWAY_USER = "sim-device-gateway"
KINDS = ("bp_monitor", "bp_monitor", "glucometer", "pulse_oximeter", "scale")
PREFIX = {"bp_monitor": "SIM-BP", "glucometer": "SIM-GLU", "pulse_oximeter": "SIM-OX", "scale": "SIM-WT"}


@dataclass(frozen=True)
class FaultRates:
    duplicate: float = 0.03
    late: float = 0.03
    wrong_unit: float = 0.01
    impossible: float = 0.01
    clock_skew: float = 0.01
    unknown_device: float = 0.01


@dataclass(frozen=True)
class SimDevice:
    serial: str
    kind: str
    sbp: float
    dbp: float
    hr: float
    spo2: float
    glucose: float
    weight: float
    treated: bool


@dataclass
class SimStats:
    readings: int = 0
    messages: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


def _device(rng: random.Random, serial: str, kind: str) -> SimDevice:
    sbp = rng.gauss(142, 16)
    return SimDevice(
        serial,
        kind,
        sbp,
        min(sbp - 30, rng.gauss(86, 9)),
        rng.gauss(74, 9),
        rng.gauss(97, 1.2),
        rng.lognormvariate(math.log(6.8), 0.25),
        rng.gauss(66, 11),
        rng.random() < 0.6,
    )


def provision(session: Session, n_devices: int, seed: int) -> list[SimDevice]:
    """Register `n_devices` simulated devices (idempotent) bound to patients from the database, all
    linked to one gateway service user that submits their readings over HTTP."""
    from medloop.auth.service import create_user
    from medloop.devices import service
    from medloop.devices.models import Device

    patients = session.scalars(
        select(Patient.id).where(Patient.active.is_(True)).order_by(Patient.id).limit(n_devices)
    ).all()
    if not patients:
        raise typer.BadParameter("no patients in the database: run `medloop sim region` first")
    gateway = session.scalar(select(User).where(User.username == GATEWAY_USER))
    if gateway is None:
        gateway = create_user(
            session,
            GATEWAY_USER,
            secrets.token_urlsafe(24),
            [Role.DEVICE],
            is_service=True,
            display_name="Simulated device gateway",
        )
    rng = random.Random(seed)
    devices = []
    since = utcnow() - timedelta(days=365)
    for i in range(n_devices):
        kind = KINDS[i % len(KINDS)]
        serial = f"{PREFIX[kind]}-{i:05d}"
        device = session.scalar(select(Device).where(Device.serial == serial))
        if device is None:
            device = service.register_device(session, serial, kind, model="medloop simulator")
        device.service_user_id = gateway.id
        if service.open_binding(device) is None:
            service.bind(session, system_principal(), serial, patients[i % len(patients)], start_at=since)
        devices.append(_device(rng, serial, kind))
    session.flush()
    return devices


def diurnal(local: datetime) -> float:
    """Relative BP change by local hour: a dip of about 10 % at night, a morning surge."""
    hour = local.hour + local.minute / 60
    return 0.06 * math.cos(2 * math.pi * (hour - 10) / 24) - 0.04 * (hour < 6)


def readings_at(
    dev: SimDevice, at: datetime, progress: float, rng: random.Random, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """The compact readings one device takes at `at`; `progress` (0–1) scales the treatment effect."""
    when = at.isoformat()
    if dev.kind == "bp_monitor":
        factor = 1 + diurnal(at.astimezone(tz))
        drop = 12 * progress if dev.treated else 0.0
        sbp = (dev.sbp - drop) * factor + rng.gauss(0, 6)
        dbp = min((dev.dbp - drop / 2) * factor + rng.gauss(0, 4), sbp - 15)
        bp: dict[str, Any] = {
            "type": "blood_pressure",
            "systolic": round(sbp),
            "diastolic": round(dbp),
            "unit": "mmHg",
            "at": when,
        }
        if rng.random() < 0.1:  # some monitors report kPa
            bp.update(systolic=round(sbp / 7.50062, 1), diastolic=round(dbp / 7.50062, 1), unit="kPa")
        return [
            bp,
            {"type": "heart_rate", "value": round(dev.hr + rng.gauss(0, 5)), "unit": "bpm", "at": when},
        ]
    if dev.kind == "glucometer":
        value = max(2.0, dev.glucose + rng.gauss(0, 0.9) + (2.5 if rng.random() < 0.3 else 0))
        if rng.random() < 0.5:
            return [{"type": "glucose", "value": round(value * 18.016), "unit": "mg/dL", "at": when}]
        return [{"type": "glucose", "value": round(value, 1), "unit": "mmol/L", "at": when}]
    if dev.kind == "pulse_oximeter":
        return [
            {
                "type": "spo2",
                "value": round(min(100.0, dev.spo2 + rng.gauss(0, 1.2))),
                "unit": "%",
                "at": when,
            },
            {"type": "heart_rate", "value": round(dev.hr + rng.gauss(0, 5)), "unit": "/min", "at": when},
        ]
    weight = dev.weight + rng.gauss(0, 0.3)
    if rng.random() < 0.3:
        return [{"type": "body_weight", "value": round(weight / 0.45359237, 1), "unit": "lb", "at": when}]
    return [{"type": "body_weight", "value": round(weight, 1), "unit": "kg", "at": when}]


def _inject(
    reading: dict[str, Any], serial: str, rates: FaultRates, rng: random.Random, stats: SimStats
) -> tuple[str, dict[str, Any]]:
    """Maybe damage one reading; returns the serial it is sent as and the reading."""
    roll = rng.random()
    edges = [
        ("wrong_unit", rates.wrong_unit),
        ("impossible", rates.impossible),
        ("clock_skew", rates.clock_skew),
        ("unknown_device", rates.unknown_device),
    ]
    for fault, rate in edges:
        if roll < rate:
            stats.faults[fault] += 1
            if fault == "wrong_unit":
                return serial, {**reading, "unit": "mmHg/s" if "systolic" in reading else "furlong"}
            if fault == "impossible":
                if "systolic" in reading:
                    return serial, {**reading, "systolic": 420, "diastolic": 15, "unit": "mmHg"}
                return serial, {**reading, "value": -5}
            if fault == "clock_skew":
                skewed = datetime.fromisoformat(reading["at"]) + timedelta(hours=rng.choice([2, 9, 30]))
                return serial, {**reading, "at": skewed.isoformat()}
            return f"SIM-UNKNOWN-{rng.randrange(10_000):04d}", reading
        roll -= rate
    return serial, reading


def generate(
    devices: list[SimDevice],
    start: datetime,
    minutes: float,
    interval_s: float,
    rates: FaultRates,
    seed: int,
    tz: ZoneInfo,
    stats: SimStats,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(serial, reading) in delivery order: by effective time, with duplicates and late deliveries."""
    rng = random.Random(seed + 1)
    steps = max(1, int(minutes * 60 / interval_s))
    held: list[tuple[int, str, dict[str, Any]]] = []
    for step in range(steps):
        at = start + timedelta(seconds=step * interval_s)
        for dev in devices:
            jitter = timedelta(seconds=rng.uniform(0, min(interval_s, 30)), microseconds=rng.randrange(1000))
            for reading in readings_at(dev, at + jitter, step / max(1, steps - 1), rng, tz):
                stats.readings += 1
                item = _inject(reading, dev.serial, rates, rng, stats)
                if rng.random() < rates.late:
                    stats.faults["late"] += 1
                    held.append((step + rng.randint(1, 5), *item))
                    continue
                yield item
                if rng.random() < rates.duplicate:
                    stats.faults["duplicate"] += 1
                    yield item
        due = [h for h in held if h[0] <= step]
        held = [h for h in held if h[0] > step]
        for _, serial, reading in due:
            yield serial, reading
    for _, serial, reading in held:
        yield serial, reading


async def _send_http(
    items: Iterator[tuple[str, dict[str, Any]]],
    client: httpx.AsyncClient,
    token: str,
    batch: int,
    stats: SimStats,
) -> None:
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    pending: list[dict[str, Any]] = []

    async def flush() -> None:
        if not pending:
            return
        response = await client.post(
            "/api/v1/readings", content=orjson.dumps({"readings": pending}), headers=headers
        )
        if response.status_code not in (200, 422):
            raise typer.BadParameter(f"server answered {response.status_code}: {response.text[:300]}")
        for item in response.json().get("items", []):
            stats.outcomes[item.get("reason") or item["status"]] += 1
        stats.messages += 1
        pending.clear()

    for serial, reading in items:
        pending.append({**reading, "device": serial})
        if len(pending) >= batch:
            await flush()
    await flush()


async def _send_mqtt(items: Iterator[tuple[str, dict[str, Any]]], broker: str, stats: SimStats) -> None:
    import aiomqtt

    from medloop.devices.broker import topic_for
    from medloop.devices.mqtt import parse_broker_url

    address = parse_broker_url(broker)
    async with aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=f"medloop-sim-{secrets.token_hex(4)}",
    ) as client:
        for serial, reading in items:
            await client.publish(topic_for(serial), orjson.dumps(reading), qos=1)
            stats.messages += 1


def _in_process_token(settings: Settings, session: Session) -> str:
    """A token for the gateway user, issued directly (the in-process run owns the database)."""
    from medloop.auth.service import grant_token

    user = session.scalar(select(User).where(User.username == GATEWAY_USER))
    assert user is not None
    return grant_token(session, settings, user, None).access_token


def simulate(
    settings: Settings,
    *,
    devices: int,
    minutes: float,
    transport: str = "http",
    interval_s: float = 60.0,
    rates: FaultRates = FaultRates(),
    seed: int = 1,
    url: str | None = None,
    token: str | None = None,
    broker: str | None = None,
    batch: int = 500,
) -> SimStats:
    """Provision devices, generate the last `minutes` of readings and send them."""
    import httpx

    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        fleet = provision(session, devices, seed)
        token = token or (None if url else _in_process_token(settings, session))
    tz = ZoneInfo(settings.timezone)
    stats = SimStats()
    items = generate(
        fleet, utcnow() - timedelta(minutes=minutes), minutes, interval_s, rates, seed, tz, stats
    )

    async def run() -> None:
        if transport == "mqtt":
            if not broker:
                raise typer.BadParameter("--transport mqtt needs --broker or MEDLOOP_MQTT_BROKER")
            await _send_mqtt(items, broker, stats)
            return
        assert token is not None
        if url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                await _send_http(items, client, token, batch, stats)
            return
        from medloop.app import create_app

        transport_ = httpx.ASGITransport(app=create_app(settings, engine=engine))
        async with httpx.AsyncClient(
            transport=transport_, base_url="http://medloop.local", timeout=60
        ) as client:
            await _send_http(items, client, token, batch, stats)

    asyncio.run(run())
    engine.dispose()
    return stats


@app.command("devices")
def devices_command(
    devices: int = typer.Option(
        50, "--devices", min=1, help="Simulated devices (bound to patients in the DB)."
    ),
    minutes: float = typer.Option(10.0, "--minutes", min=0.1, help="Minutes of readings (ending now)."),
    transport: str = typer.Option("http", "--transport", help="http (in-process unless --url) or mqtt."),
    interval: float = typer.Option(60.0, "--interval", min=1.0, help="Seconds between a device's readings."),
    url: str | None = typer.Option(None, "--url", help="POST to this running server instead of in-process."),
    token: str | None = typer.Option(
        None, "--token", envvar="MEDLOOP_SIM_TOKEN", help="Bearer token for --url."
    ),
    broker: str | None = typer.Option(None, "--broker", help="mqtt://… (default: MEDLOOP_MQTT_BROKER)."),
    duplicates: float = typer.Option(0.03, help="Rate of duplicate deliveries."),
    late: float = typer.Option(0.03, help="Rate of late, out-of-order deliveries."),
    wrong_units: float = typer.Option(0.01, help="Rate of readings with a unit the pipeline does not know."),
    impossible: float = typer.Option(0.01, help="Rate of physiologically impossible values."),
    clock_skew: float = typer.Option(0.01, help="Rate of effective times hours in the future."),
    unknown_devices: float = typer.Option(0.01, help="Rate of readings from unregistered devices."),
    seed: int = typer.Option(1, "--seed"),
) -> None:
    """Stream simulated device readings through the ingestion pipeline, with injected faults."""
    if transport not in ("http", "mqtt"):
        raise typer.BadParameter("use http or mqtt", param_hint="--transport")
    if url and not token:
        raise typer.BadParameter("--url needs --token (a device or clinician access token)")
    settings = get_settings()
    rates = FaultRates(duplicates, late, wrong_units, impossible, clock_skew, unknown_devices)
    started = time.perf_counter()
    stats = simulate(
        settings,
        devices=devices,
        minutes=minutes,
        transport=transport,
        interval_s=interval,
        rates=rates,
        seed=seed,
        url=url,
        token=token,
        broker=broker or settings.mqtt_broker,
    )
    seconds = time.perf_counter() - started
    typer.echo(
        f"readings generated: {stats.readings}, messages sent: {stats.messages} via {transport} "
        f"in {seconds:.1f} s"
    )
    typer.echo(
        "faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(stats.faults.items())) or "none")
    )
    if stats.outcomes:
        typer.echo("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items())))
