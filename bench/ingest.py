"""Device ingestion benchmark, on PostgreSQL (MEDLOOP_TEST_PG_URL, an admin URL: a scratch database
is created and dropped). Prints each path against its baseline measured in the same run:

1. HTTP batch path end-to-end (POST /api/v1/readings, 10,000 readings per request: parse →
   normalise → validate → de-duplicate → store → evaluate → audit) vs a raw PostgreSQL COPY of
   the same rows into the same table (the limit). Targets: ≥ 40 % and ≥ 20,000 readings/s.
2. MQTT path (`medloop ingest mqtt` subprocess, one reading per message, until all are stored) vs
   the broker's own publish→subscribe rate for the same messages (a QoS 1 subscriber that only
   counts). Target: ≥ 50 %. Needs Mosquitto (/usr/sbin/mosquitto).
3. Memory over a soak of the HTTP path: RSS at the start and the end.

    python bench/ingest.py                      # short soak (30 s)
    python bench/ingest.py --soak-minutes 10    # the full soak
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psutil
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

# sys.path[0] is this script's directory, where the other benchmarks (bench/fhir.py …) would shadow packages.
sys.path.pop(0)

from medloop.app import create_app
from medloop.auth.models import Role
from medloop.auth.principal import system_principal
from medloop.auth.service import create_user
from medloop.devices import service
from medloop.devices.broker import topic_for
from medloop.devices.ingest import READING_COLUMNS, READINGS
from medloop.devices.models import Reading
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.settings import Settings
from medloop.store import migrate
from medloop.store.base import utcnow
from medloop.store.bulk import copy_rows
from medloop.store.engine import make_engine

BATCH = 10_000
N_DEVICES = 200
PASSWORD = "bench-password-123"


@contextmanager
def scratch_database(admin_url: str) -> Iterator[tuple[Engine, str]]:
    name = f"medloop_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        yield engine, url
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def setup(engine: Engine, since: datetime) -> list[str]:
    with Session(engine) as s:
        org = Organisation(
            code="BENCH",
            name="Bench clinic",
            tier="primary",
            province_code="330000",
            city_code="330100",
            district_code="330102",
            latitude=30.0,
            longitude=120.0,
            capabilities=["primary_care"],
        )
        s.add(org)
        s.flush()
        serials = []
        for i in range(N_DEVICES):
            patient = Patient(
                family_name="B",
                given_name=f"p{i}",
                name=f"Bp{i}",
                sex="F",
                birth_date=date(1960, 1, 1),
                province_code="330000",
                city_code="330100",
                district_code="330102",
                home_facility_id=org.id,
            )
            s.add(patient)
            s.flush()
            serial = f"BENCH-{i:04d}"
            service.register_device(s, serial, "multi")
            service.bind(s, system_principal(), serial, patient.id, start_at=since)
            serials.append(serial)
        create_user(s, "bench-admin", PASSWORD, [Role.ADMIN])
        s.commit()
    return serials


def readings(serials: list[str], since: datetime, start: int, n: int) -> list[dict[str, Any]]:
    """n distinct readings (compact items): heart rate, SpO2, glucose in mg/dL, weight, and BP."""
    out = []
    for i in range(start, start + n):
        serial = serials[i % len(serials)]
        at = (since + timedelta(seconds=i // len(serials), microseconds=i % 1000)).isoformat()
        kind = i % 5
        if kind == 0:
            out.append(
                {"device": serial, "type": "heart_rate", "value": 60 + i % 50, "unit": "bpm", "at": at}
            )
        elif kind == 1:
            out.append({"device": serial, "type": "spo2", "value": 93 + i % 7, "unit": "%", "at": at})
        elif kind == 2:
            out.append({"device": serial, "type": "glucose", "value": 80 + i % 90, "unit": "mg/dL", "at": at})
        elif kind == 3:
            out.append(
                {"device": serial, "type": "body_weight", "value": 50 + i % 40, "unit": "kg", "at": at}
            )
        else:
            out.append(
                {
                    "device": serial,
                    "type": "blood_pressure",
                    "systolic": 110 + i % 60,
                    "diastolic": 70 + i % 30,
                    "unit": "mmHg",
                    "at": at,
                }
            )
    return out


def reading_count(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(Reading)) or 0)


def truncate_readings(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE reading CASCADE"))


def bench_http_and_copy(
    engine: Engine, url: str, serials: list[str], since: datetime, batches: int
) -> tuple[float, float, float]:
    """Interleaved, so both see the same machine: each round POSTs 10,000 readings (timed), takes
    the rows the pipeline stored, deletes them and COPYs the same rows back into the same table
    (timed). Returns (HTTP readings/s, HTTP rows/s, COPY rows/s)."""
    settings = Settings(database_url=url, log_level="WARNING")
    http_s = copy_s = 0.0
    n_rows = 0
    with TestClient(create_app(settings, engine=engine)) as client:
        token = client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "bench-admin", "password": PASSWORD},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        bodies = [
            orjson.dumps({"readings": readings(serials, since, 10_000_000 + b * BATCH, BATCH)})
            for b in range(batches + 1)
        ]
        client.post("/api/v1/readings", content=bodies[-1], headers=headers)  # warm-up
        for body in bodies[:-1]:
            started = time.perf_counter()
            response = client.post("/api/v1/readings", content=body, headers=headers)
            http_s += time.perf_counter() - started
            assert response.status_code == 200 and response.json()["stored"] == BATCH, response.text[:300]
            ids = [uuid.UUID(i) for item in response.json()["items"] for i in item["reading_ids"]]
            with engine.begin() as conn:
                rows = [
                    tuple(r)
                    for r in conn.execute(
                        select(*[READINGS.c[c] for c in READING_COLUMNS]).where(READINGS.c.id.in_(ids))
                    )
                ]
                conn.execute(READINGS.delete().where(READINGS.c.id.in_(ids)))
            with engine.connect() as conn:
                started = time.perf_counter()
                copy_rows(conn, READINGS, READING_COLUMNS, rows)
                conn.commit()
                copy_s += time.perf_counter() - started
            n_rows += len(rows)
    return batches * BATCH / http_s, n_rows / http_s, n_rows / copy_s


# --- MQTT -----------------------------------------------------------------------------------------


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    import getpass
    import socket

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 0\nmax_inflight_messages 10000\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.loop_stop()
    client.disconnect()


def count_subscriber(port: int, expected: int) -> None:
    """Subprocess role: subscribe at QoS 1, print 'ready', count messages, print 'done' at `expected`."""
    done = threading.Event()
    seen = 0

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= expected:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-counter")
    client.on_message = on_message
    client.on_subscribe = lambda *_: print("ready", flush=True)
    client.connect("127.0.0.1", port)
    client.subscribe("medloop/v1/devices/+/readings", qos=1)
    client.loop_start()
    done.wait(600)
    print("done", flush=True)
    client.loop_stop()


def wait_line(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if word in line:
            return
    raise RuntimeError(f"subprocess ended before printing {word!r}")


def bench_mqtt(engine: Engine, url: str, serials: list[str], since: datetime, n: int) -> tuple[float, float]:
    """Returns (broker publish→subscribe messages/s, MQTT ingestion readings/s)."""
    items = readings(serials, since, 20_000_000, n)
    messages = [(topic_for(r.pop("device")), orjson.dumps(r)) for r in items]
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = start_broker(Path(tmp))
        try:
            broker_before = broker_rate(port, messages)
            truncate_readings(engine)
            env = {**os.environ, "MEDLOOP_DATABASE_URL": url, "MEDLOOP_LOG_LEVEL": "INFO"}
            medloop = str(Path(sys.executable).parent / "medloop")
            ingester = subprocess.Popen(
                [
                    medloop,
                    "ingest",
                    "mqtt",
                    "--broker",
                    f"mqtt://127.0.0.1:{port}",
                    "--client-id",
                    "bench-ingester",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            wait_line(ingester, "subscribed")
            threading.Thread(target=lambda: [None for _ in ingester.stdout or []], daemon=True).start()
            started = time.perf_counter()
            publish_all(port, messages)
            while reading_count(engine) < n + n // 5:  # BP readings are two rows
                time.sleep(0.02)
            ingest_rate = n / (time.perf_counter() - started)
            ingester.send_signal(signal.SIGTERM)
            ingester.wait(timeout=20)
            broker_after = broker_rate(port, messages)
        finally:
            broker.terminate()
            broker.wait()
    return (broker_before + broker_after) / 2, ingest_rate


def broker_rate(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Messages/s from the first publish to the last delivery to a QoS 1 subscriber that only counts."""
    counter = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "subscriber",
            "--port",
            str(port),
            "--expected",
            str(len(messages)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_line(counter, "ready")
    started = time.perf_counter()
    publish_all(port, messages)
    wait_line(counter, "done")
    rate = len(messages) / (time.perf_counter() - started)
    counter.wait()
    return rate


def bench_soak(
    engine: Engine, url: str, serials: list[str], since: datetime, minutes: float
) -> tuple[float, float, int]:
    """RSS (MiB) after warm-up and at the end of `minutes` of HTTP batches; returns (start, end, readings)."""
    settings = Settings(database_url=url, log_level="WARNING")
    process = psutil.Process()
    sent = 0
    with TestClient(create_app(settings, engine=engine)) as client:
        token = client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "bench-admin", "password": PASSWORD},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}

        def post(i: int) -> None:
            body = orjson.dumps({"readings": readings(serials, since, 30_000_000 + i * BATCH, BATCH)})
            response = client.post("/api/v1/readings", content=body, headers=headers)
            assert response.status_code == 200, response.text[:300]

        for i in range(3):
            post(i)
        gc.collect()
        start_rss = process.memory_info().rss / 2**20
        deadline = time.monotonic() + minutes * 60
        i = 3
        while time.monotonic() < deadline:
            post(i)
            i += 1
            sent += BATCH
            if i % 20 == 0:
                truncate_readings(engine)  # keep the table (not the process) from growing
        gc.collect()
        end_rss = process.memory_info().rss / 2**20
    return start_rss, end_rss, sent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=10, help="HTTP requests of 10,000 readings each.")
    parser.add_argument("--mqtt-readings", type=int, default=20_000)
    parser.add_argument("--soak-minutes", type=float, default=0.5)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "subscriber":
        count_subscriber(args.port, args.expected)
        return
    admin_url = os.environ.get("MEDLOOP_TEST_PG_URL")
    if not admin_url:
        print("skipped: set MEDLOOP_TEST_PG_URL to a PostgreSQL admin URL")
        return
    since = utcnow() - timedelta(days=300)
    with scratch_database(admin_url) as (engine, url):
        serials = setup(engine, since)
        http_rate, http_rows, copy_rate = bench_http_and_copy(engine, url, serials, since, args.batches)
        ratio = http_rows / copy_rate
        print(
            f"HTTP batch path:  {http_rate:,.0f} readings/s ({http_rows:,.0f} rows/s), "
            f"{args.batches} x {BATCH:,} readings"
        )
        print(f"raw COPY:         {copy_rate:,.0f} rows/s (same rows and table, interleaved with HTTP)")
        print(
            f"HTTP / COPY:      {ratio:.0%}   (target >= 40 %; readings/s target >= 20,000: "
            f"{'met' if http_rate >= 20_000 else 'NOT met'})"
        )
        if shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"):
            pubsub_rate, mqtt_rate = bench_mqtt(engine, url, serials, since, args.mqtt_readings)
            print(
                f"broker pub->sub:  {pubsub_rate:,.0f} messages/s (QoS 1 counting subscriber, mean of 2 runs)"
            )
            print(f"MQTT ingestion:   {mqtt_rate:,.0f} readings/s (one reading per message, until stored)")
            print(f"MQTT / broker:    {mqtt_rate / pubsub_rate:.0%}   (target >= 50 %)")
        else:
            print("MQTT: skipped (mosquitto not installed)")
        start_rss, end_rss, sent = bench_soak(engine, url, serials, since, args.soak_minutes)
        print(
            f"soak {args.soak_minutes:g} min:    RSS {start_rss:,.0f} MiB -> {end_rss:,.0f} MiB "
            f"({end_rss - start_rss:+.0f} MiB) over {sent:,} readings"
        )


if __name__ == "__main__":
    main()
