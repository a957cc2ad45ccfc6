"""MQTT against a real Mosquitto: ingestion, broker-config (password file and ACL), and the
reliability test (ingester SIGKILLed and broker restarted mid-stream: nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.devices import service
from medloop.devices.broker import INGESTER_USERNAME, mosquitto_hash, topic_for, write_broker_files
from medloop.devices.models import DeadLetter, Reading
from medloop.devices.mqtt import Ingester, Message, entries_from_messages
from medloop.devices.types import Item, Rejected
from medloop.store.base import utcnow
from tests.devices.conftest import Fleet, count
from tests.devices.mosquitto import Broker

pytestmark = pytest.mark.mqtt


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def hr(minutes_ago: float, value: float = 70) -> bytes:
    at = (utcnow() - timedelta(minutes=minutes_ago)).isoformat()
    return orjson.dumps({"type": "heart_rate", "value": value, "unit": "/min", "at": at})


def test_entries_from_messages_never_raise() -> None:
    messages = [
        Message(topic_for("BP-1"), hr(1)),
        Message(topic_for("BP-1"), b"{oops"),
        Message("other/topic", hr(1)),
        Message(topic_for("BP-1"), b"\xff\xfe"),
        Message(
            topic_for("BP-1"),
            orjson.dumps(
                {"device": "OX-1", "type": "hr", "value": 1, "unit": "/min", "at": "2025-01-01T00:00:00Z"}
            ),
        ),
    ]
    entries = entries_from_messages(messages)
    assert [type(e).__name__ for e in entries] == ["Item", "Rejected", "Rejected", "Rejected", "Rejected"]
    assert [e.index for e in entries] == [0, 1, 2, 3, 4]
    assert isinstance(entries[0], Item) and entries[0].device_serial == "BP-1"
    assert isinstance(entries[4], Rejected) and entries[4].reason == "serial_mismatch"


async def _publish_each(
    port: int, publish: list[tuple[str, bytes]], username: str | None = None, password: str | None = None
) -> None:
    """Each message on its own connection: a broker that refuses one (ACL) cannot affect the next."""
    for topic, payload in publish:
        try:
            async with aiomqtt.Client("127.0.0.1", port, username=username, password=password) as pub:
                await pub.publish(topic, payload, qos=1)
        except aiomqtt.MqttError:
            pass


async def _run_ingester(
    engine: Engine,
    url: str,
    port: int,
    publish: list[tuple[str, bytes]],
    expect_stored: int,
    expect_dead: int,
    username: str | None = None,
    password: str | None = None,
) -> None:
    ingester = Ingester(engine, url, client_id="test-ingester", max_wait=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    await asyncio.wait_for(ingester.subscribed.wait(), 30)
    await _publish_each(port, publish, username, password)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with Session(engine) as s:
            if count(s, Reading) >= expect_stored and count(s, DeadLetter) >= expect_dead:
                break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    stop.set()
    await task


def test_ingest_over_mqtt(fleet: Fleet, broker: Broker) -> None:
    same = hr(5)
    publish = [
        (topic_for("BP-1"), same),
        (topic_for("BP-1"), same),
        (topic_for("OX-1"), b"not json"),
        (
            topic_for("BP-1"),
            orjson.dumps(
                {
                    "readings": [
                        {
                            "type": "bp",
                            "systolic": 200,
                            "diastolic": 100,
                            "unit": "mmHg",
                            "at": utcnow().isoformat(),
                        }
                    ]
                }
            ),
        ),
    ]
    asyncio.run(_run_ingester(fleet.engine, broker.url, broker.port, publish, expect_stored=3, expect_dead=1))
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 3
        (letter,) = s.scalars(select(DeadLetter)).all()
        assert (letter.format, letter.reason, letter.device_serial) == ("message", "malformed", "OX-1")
        assert letter.payload["text"] == "not json"
        assert count(s, Reading, Reading.channel == "mqtt") == 3


def test_broker_config_password_file_and_acl(fleet: Fleet, tmp_path: Path) -> None:
    with Session(fleet.engine, expire_on_commit=False) as s:
        bp = service.issue_credential(s, system_principal(), "BP-1", "mqtt")
        ox = service.issue_credential(s, system_principal(), "OX-1", "mqtt")
        service.revoke_credential(s, system_principal(), ox.credential.id)
        entries = service.broker_entries(s, mosquitto_hash("ingester-secret"))
        s.commit()
    assert [user for user, _ in entries] == [INGESTER_USERNAME, "BP-1"]
    files = write_broker_files(tmp_path / "conf", entries, port=1883)
    assert "pattern write medloop/v1/devices/%u/readings" in files.acl_file.read_text()
    extra = f"password_file {files.password_file}\nacl_file {files.acl_file}\n"
    b = Broker(tmp_path / "broker", extra, anonymous=False)
    b.start()
    try:
        ingest_url = f"mqtt://{INGESTER_USERNAME}:ingester-secret@127.0.0.1:{b.port}"
        # BP-1 may publish to its own topic only; the broker refuses its message for OX-1's topic.
        publish = [(topic_for("OX-1"), hr(3)), (topic_for("BP-1"), hr(2))]
        asyncio.run(
            _run_ingester(
                fleet.engine,
                ingest_url,
                b.port,
                publish,
                expect_stored=1,
                expect_dead=0,
                username="BP-1",
                password=bp.secret,
            )
        )
        with Session(fleet.engine) as s:
            devices = s.scalars(select(Reading.device_id)).all()
            assert len(devices) == 1
        for user, password in [("BP-1", "wrong"), ("OX-1", ox.secret)]:
            with pytest.raises(aiomqtt.MqttError):
                asyncio.run(_connect(b.port, user, password))
    finally:
        b.stop()


async def _connect(port: int, username: str, password: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port, username=username, password=password) as c:
        await c.publish(topic_for(username), b"{}", qos=1)


# --- reliability ----------------------------------------------------------------------------------

N_GOOD = 20_000
N_DUPLICATES = 2_000
N_BAD = 300
SERIALS = [f"REL-{i:02d}" for i in range(20)]


def _messages(since: Any) -> tuple[list[tuple[str, bytes]], int]:
    """N_GOOD distinct good readings, N_BAD distinct bad ones, N_DUPLICATES repeats of good ones,
    shuffled. Returns (messages, number of bad)."""
    rng = random.Random(7)
    good = []
    for i in range(N_GOOD):
        serial = SERIALS[i % len(SERIALS)]
        at = since + timedelta(minutes=1 + i // len(SERIALS), milliseconds=i % 997)
        kind = i % 3
        reading = (
            {"type": "heart_rate", "value": 60 + i % 40, "unit": "bpm"}
            if kind == 0
            else {"type": "spo2", "value": 92 + i % 8, "unit": "%"}
            if kind == 1
            else {"type": "glucose", "value": 90 + i % 60, "unit": "mg/dL"}
        )
        good.append((topic_for(serial), orjson.dumps({**reading, "at": at.isoformat()})))
    bad = []
    for i in range(N_BAD):
        serial = SERIALS[i % len(SERIALS)]
        at = (since + timedelta(minutes=5, seconds=i)).isoformat()
        kind = i % 3
        payload = (
            orjson.dumps({"type": "heart_rate", "value": 400 + i, "unit": "/min", "at": at})
            if kind == 0
            else orjson.dumps({"type": "weight", "value": 70, "unit": "stone", "at": at, "n": i})
            if kind == 1
            else f"garbage {i}".encode()
        )
        bad.append((topic_for(serial), payload))
    dups = [good[rng.randrange(N_GOOD)] for _ in range(N_DUPLICATES)]
    messages = good + bad + dups
    rng.shuffle(messages)
    return messages, len(bad)


def _start_ingester(url: str, db_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEDLOOP_DATABASE_URL": db_url, "MEDLOOP_LOG_LEVEL": "INFO"}
    subscriptions = log.read_text(errors="replace").count("mqtt ingester subscribed") if log.exists() else 0
    medloop = str(Path(sys.executable).parent / "medloop")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                medloop,
                "ingest",
                "mqtt",
                "--broker",
                url,
                "--client-id",
                "reliability-ingester",
                "--batch-size",
                "500",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 180  # generous: a loaded 2-core machine starts Python slowly
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("mqtt ingester subscribed") > subscriptions:
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"ingester exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError("ingester did not subscribe in time")


class Publisher:
    """A paho client with a persistent session: what it published without a PUBACK (the broker went
    away) it sends again after reconnecting. Tracks which message ids the broker acknowledged."""

    def __init__(self, port: int) -> None:
        self.acked: set[int] = set()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="reliability-publisher", clean_session=False
        )
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.mids: list[int] = []

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self.mids.append(self.client.publish(topic, payload, qos=1).mid)

    def wait_acked(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.acked.issuperset(self.mids):
            time.sleep(0.05)
        assert self.acked.issuperset(self.mids), (
            f"{len(set(self.mids) - self.acked)} publishes not acknowledged"
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_reliability_kill_ingester_and_restart_broker(fleet: Fleet, db_url: str, tmp_path: Path) -> None:
    since = utcnow() - timedelta(days=2)
    admin = system_principal()
    with Session(fleet.engine, expire_on_commit=False) as s:
        patients = list(fleet.world.patients.values())
        for i, serial in enumerate(SERIALS):
            service.register_device(s, serial, "multi")
            service.bind(s, admin, serial, patients[i % len(patients)].id, start_at=since)
        s.commit()
    messages, n_bad = _messages(since)
    third = len(messages) // 3

    broker = Broker(tmp_path / "broker")
    broker.start()
    log = tmp_path / "ingester.log"
    ingester = _start_ingester(broker.url, db_url, log)
    publisher = Publisher(broker.port)
    try:
        publisher.publish(messages[:third])
        time.sleep(0.5)
        ingester.send_signal(signal.SIGKILL)  # mid-stream, with a batch in flight
        ingester.wait()
        publisher.publish(messages[third : 2 * third])  # the broker keeps these for the absent ingester
        publisher.wait_acked()
        ingester = _start_ingester(broker.url, db_url, log)
        last = threading.Thread(target=publisher.publish, args=(messages[2 * third :],))
        last.start()
        time.sleep(0.2)
        broker.restart()  # mid-stream again: the ingester and the publisher reconnect
        last.join()
        publisher.wait_acked()
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            with Session(fleet.engine) as s:
                if count(s, Reading) >= N_GOOD and count(s, DeadLetter) >= n_bad:
                    break
            time.sleep(0.5)
        time.sleep(1.0)  # let any redelivery land: it must change nothing
    finally:
        publisher.close()
        ingester.send_signal(signal.SIGTERM)
        try:
            ingester.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ingester.kill()
        broker.stop()
    with Session(fleet.engine) as s:
        stored = count(s, Reading)
        distinct = s.scalar(
            select(func.count()).select_from(
                select(Reading.device_id, Reading.code, Reading.effective_at).distinct().subquery()
            )
        )
        dead = count(s, DeadLetter)
        reasons = dict(s.execute(select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason)).all())
    assert stored == N_GOOD, f"stored {stored} of {N_GOOD}"
    assert distinct == N_GOOD
    assert dead == n_bad, reasons
    assert reasons == {"implausible": 100, "unknown_unit": 100, "malformed": 100}
