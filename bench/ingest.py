"""Device ingestion benchmark, on PostgreSQL (MEDLOOP_TEST_PG_URL, an admin URL: a scratch database
is created and dropped). Prints each path against its baseline measured in the same run:

1. HTTP batch path end-to-end (POST /api/v1/readings, 10,000 readings per request: parse →
   normalise → validate → de-duplicate → store → evaluate → audit) vs a raw PostgreSQL COPY of
   the same rows into the same table (the limit). Targets: ≥ 40 % and ≥ 20,000 readings/s.
   The server is `medloop serve` as deployed by default (one uvicorn worker process) in its own
   process; the client keeps --concurrency requests in flight (default 2: two gateways posting).
   The baseline COPYs the same rows with as many connections at once, pre-encoded (binary COPY
   data built before the clock starts), so it is the database's own limit for those rows.
2. MQTT path (`medloop ingest mqtt` subprocess, one reading per message, until all are stored) vs
   the broker's own publish→subscribe rate for the same messages (a QoS 1 subscriber that only
   counts). Target: ≥ 50 %. Needs Mosquitto (/usr/sbin/mosquitto).
3. Memory over a soak of the HTTP path: RSS at the start and the end.

    python bench/ingest.py                      # short soak (30 s)
    python bench/ingest.py --concurrency 1      # one request at a time
    python bench/ingest.py --soak-minutes 10    # the full soak
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as paho
import psutil
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

# sys.path[0] is this script's directory, where the other benchmarks (bench/fhir.py …) would shadow
# packages: replace it by the repository root.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_database

from medloop.auth.models import Role
from medloop.auth.principal import system_principal
from medloop.auth.service import create_user
from medloop.devices import pgcopy, service
from medloop.devices.broker import topic_for
from medloop.devices.ingest import READING_COLUMNS, READINGS
from medloop.devices.models import Reading
from medloop.devices.types import ReadingRow
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.store.base import utcnow

BATCH = 10_000
N_DEVICES = 200
PASSWORD = "bench-password-123"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def api_server(url: str) -> Iterator[tuple[httpx.Client, psutil.Process]]:
    """`medloop serve` (default workers) on the scratch database; a client logged in as bench-admin."""
    port = free_port()
    env = {
        **os.environ,
        "MEDLOOP_DATABASE_URL": url,
        "MEDLOOP_LOG_LEVEL": "WARNING",
        "MEDLOOP_SECRET_KEY": uuid.uuid4().hex * 2,
    }
    medloop = str(Path(sys.executable).parent / "medloop")
    server = subprocess.Popen([medloop, "serve", "--port", str(port)], env=env, stdin=subprocess.DEVNULL)
    try:
        wait_port(port, "medloop serve")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=600, limits=httpx.Limits(max_connections=64)) as client:
            token = client.post(
                "/api/v1/auth/token",
                data={"grant_type": "password", "username": "bench-admin", "password": PASSWORD},
            ).json()["access_token"]
            client.headers.update({"Authorization": f"Bearer {token}", "content-type": "application/json"})
            yield client, psutil.Process(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def post_all(client: httpx.Client, bodies: list[bytes], concurrency: int) -> list[httpx.Response]:
    """POST every body to /api/v1/readings, `concurrency` requests in flight."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda body: client.post("/api/v1/readings", content=body), bodies))


def encoded_copy(rows: list[ReadingRow]) -> bytes:
    return pgcopy.HEADER + b"".join(pgcopy.encode(rows)) + pgcopy.TRAILER


def copy_encoded(engine: Engine, data: bytes) -> None:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        columns = ", ".join(pgcopy.COLUMNS)
        with raw.cursor() as cur, cur.copy(f"COPY reading ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        conn.commit()


def bench_http_and_copy(
    engine: Engine, url: str, serials: list[str], since: datetime, batches: int, concurrency: int
) -> tuple[float, float, float]:
    """Interleaved, so both see the same machine. Each round POSTs `concurrency` requests of
    10,000 readings at once (timed), takes the rows the pipeline stored, deletes them and COPYs the
    same rows back into the same table over as many connections at once (timed).
    Returns (HTTP readings/s, HTTP rows/s, COPY rows/s)."""
    http_s = copy_s = 0.0
    n_rows = 0
    rounds = max(1, batches // concurrency)
    bodies = [
        orjson.dumps({"readings": readings(serials, since, 10_000_000 + b * BATCH, BATCH)})
        for b in range((rounds + 1) * concurrency)
    ]
    with api_server(url) as (client, _server):
        post_all(client, bodies[:concurrency], concurrency)  # warm-up
        for r in range(1, rounds + 1):
            started = time.perf_counter()
            responses = post_all(client, bodies[r * concurrency : (r + 1) * concurrency], concurrency)
            http_s += time.perf_counter() - started
            payloads = []
            for response in responses:
                assert response.status_code == 200, response.text[:300]
                result = orjson.loads(response.content)
                assert result["stored"] == BATCH, result
                ids = [uuid.UUID(i) for item in result["items"] for i in item["reading_ids"]]
                with engine.begin() as conn:
                    rows = [
                        ReadingRow(*row)
                        for row in conn.execute(
                            select(*[READINGS.c[c] for c in READING_COLUMNS]).where(READINGS.c.id.in_(ids))
                        )
                    ]
                    conn.execute(READINGS.delete().where(READINGS.c.id.in_(ids)))
                payloads.append(encoded_copy(rows))
                n_rows += len(rows)
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda data: copy_encoded(engine, data), payloads))
            copy_s += time.perf_counter() - started
    n_readings = rounds * concurrency * BATCH
    return n_readings / http_s, n_rows / http_s, n_rows / copy_s


# --- MQTT -----------------------------------------------------------------------------------------


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    import getpass

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 0\nmax_inflight_messages 10000\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "mosquitto")
    return proc, port


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
    engine: Engine, url: str, serials: list[str], since: datetime, minutes: float, concurrency: int
) -> tuple[float, float, int]:
    """The server's RSS (MiB) after warm-up and at the end of `minutes` of HTTP batches; returns
    (start, end, readings)."""
    sent = 0
    with api_server(url) as (client, server):

        def post(first: int) -> None:
            bodies = [
                orjson.dumps({"readings": readings(serials, since, 30_000_000 + i * BATCH, BATCH)})
                for i in range(first, first + concurrency)
            ]
            for response in post_all(client, bodies, concurrency):
                assert response.status_code == 200, response.text[:300]

        for i in range(3):
            post(i * concurrency)
        start_rss = server.memory_info().rss / 2**20
        deadline = time.monotonic() + minutes * 60
        i = 3
        while time.monotonic() < deadline:
            post(i * concurrency)
            i += 1
            sent += BATCH * concurrency
            if i % 10 == 0:
                truncate_readings(engine)  # keep the table (not the process) from growing
        end_rss = server.memory_info().rss / 2**20
    return start_rss, end_rss, sent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=10, help="HTTP requests of 10,000 readings each.")
    parser.add_argument("--concurrency", type=int, default=2, help="HTTP requests (and COPYs) in flight.")
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
    with scratch_database(admin_url, prefix="medloop_bench_ingest") as engine:
        url = engine.url.render_as_string(hide_password=False)
        serials = setup(engine, since)
        http_rate, http_rows, copy_rate = bench_http_and_copy(
            engine, url, serials, since, args.batches, args.concurrency
        )
        ratio = http_rows / copy_rate
        print(
            f"HTTP batch path:  {http_rate:,.0f} readings/s ({http_rows:,.0f} rows/s), "
            f"{args.batches} x {BATCH:,} readings, {args.concurrency} in flight, `medloop serve` (1 worker)"
        )
        print(
            f"raw COPY:         {copy_rate:,.0f} rows/s (same rows and table, pre-encoded, "
            f"{args.concurrency} connections, interleaved with HTTP)"
        )
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
        start_rss, end_rss, sent = bench_soak(
            engine, url, serials, since, args.soak_minutes, args.concurrency
        )
        print(
            f"soak {args.soak_minutes:g} min:    server RSS {start_rss:,.0f} MiB -> {end_rss:,.0f} MiB "
            f"({end_rss - start_rss:+.0f} MiB) over {sent:,} readings"
        )


if __name__ == "__main__":
    main()
