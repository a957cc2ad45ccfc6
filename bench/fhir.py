"""FHIR benchmark, on PostgreSQL (MEDLOOP_TEST_PG_URL, an admin URL: a scratch database is created
and dropped). Every write figure is printed against a baseline measured in the same run:

1. Observation create throughput (blood-pressure panels, two reading rows each), three ways, each
   against a raw PostgreSQL COPY of the same number of reading rows into the same table:
   a. single creates: POST /fhir/Observation, one resource per request (in-process ASGI client);
   b. transaction Bundles of 100 Observations: POST /fhir;
   c. bulk NDJSON import (`medloop fhir import` / $import: every line validated, then the devices
      pipeline per chunk, whose store stage is COPY). Target: ≥ 30 % of raw COPY.
2. Search latency (p50, p95) over `--observations N` Observations (BP panels and heart rates of
   `--patients` patients over five years), generated on the server by INSERT … SELECT
   generate_series (not through the API: this part measures queries): seven common searches
   (patient + code + date, patient + date or patient alone sorted by -date, code + date with and
   without _sort=-date, a first page, _sort=-date), as an admin and as a facility-scoped clinician.
   `--explain` prints the EXPLAIN ANALYZE of each search's SQL.

    python bench/fhir.py                          # 1,000,000 observations for the search
    python bench/fhir.py --observations 10000000  # the issue's figure
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, Table, event, text
from sqlalchemy.orm import Session

# `python bench/fhir.py` puts bench/ first on the path, where this file would shadow the `fhir`
# package (fhir.resources): replace it by the repository root.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_database

from medloop.app import create_app
from medloop.auth.models import Role
from medloop.auth.principal import system_principal
from medloop.auth.service import create_user
from medloop.devices import service
from medloop.devices.ingest import READING_COLUMNS, READINGS
from medloop.fhir import bulk
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.settings import Settings
from medloop.store.base import utcnow
from medloop.store.bulk import copy_rows
from medloop.store.engine import session_factory

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
PASSWORD = "bench-password-1"
START = datetime(2020, 1, 1, tzinfo=UTC)


def setup(engine: Engine, devices: int) -> list[str]:
    """One facility, `devices` patients each with a bound BP monitor; an admin. Returns serials."""
    with Session(engine) as s:
        org = Organisation(
            code="BENCH", name="Bench hospital", tier="tertiary_hub", province_code="330000",
            city_code="330100", district_code="330102", latitude=30.2, longitude=120.1, capabilities=[],
        )  # fmt: skip
        s.add(org)
        s.flush()
        create_user(s, "admin", PASSWORD, [Role.ADMIN], [])
        create_user(s, "doc", PASSWORD, [Role.CLINICIAN], [org.code])
        serials = []
        for i in range(devices):
            p = Patient(
                family_name="B", given_name=str(i), name=f"B{i}", sex="F", birth_date=date(1960, 1, 1),
                province_code="330000", city_code="330100", district_code="330102", home_facility_id=org.id,
            )  # fmt: skip
            s.add(p)
            s.flush()
            serial = f"BENCH-{i:05d}"
            service.register_device(s, serial, "bp_monitor", model="bench")
            service.bind(s, system_principal(), serial, p.id, start_at=START - timedelta(days=1))
            serials.append(serial)
        s.commit()
    return serials


class Clock:
    """Distinct effective times, so every reading is new (no de-duplication shortcut)."""

    def __init__(self) -> None:
        self.at = START

    def next(self) -> str:
        self.at += timedelta(seconds=1)
        return self.at.isoformat()


def observation(serial: str, at: str, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": at,
        "device": {"identifier": {"value": serial}},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {
                    "value": rng.randint(100, 170),
                    "unit": "mmHg",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {
                    "value": rng.randint(60, 95),
                    "unit": "mmHg",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            },
        ],
    }


def raw_copy_rate(
    engine: Engine, observations: int, patient_ids: list[uuid.UUID], device_ids: list[uuid.UUID]
) -> float:
    """Observations per second for a raw COPY of their reading rows (two per BP panel)."""
    now = utcnow()
    rows = []
    for i in range(observations):
        k = i % len(patient_ids)
        at, panel = now - timedelta(days=3000, seconds=i), uuid.uuid4()
        for code, value in (("8480-6", 130.0), ("8462-4", 85.0)):
            rows.append(
                [uuid.uuid4(), patient_ids[k], device_ids[k], code, value, "mm[Hg]", at, now, panel, "bench"]
            )
    started = time.perf_counter()
    with engine.begin() as conn:
        copy_rows(conn, READINGS, READING_COLUMNS, rows)
    return observations / (time.perf_counter() - started)


def ids(engine: Engine) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    with engine.connect() as conn:
        pairs = conn.execute(
            text("select patient_id, device_id from device_binding order by device_id")
        ).all()
    return [p for p, _ in pairs], [d for _, d in pairs]


def bench_writes(engine: Engine, serials: list[str], args: argparse.Namespace) -> None:
    rng, clock = random.Random(7), Clock()
    patient_ids, device_ids = ids(engine)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), log_level="WARNING")
    with TestClient(create_app(settings, engine=engine)) as client:
        token = client.post(
            "/api/v1/auth/token", data={"grant_type": "password", "username": "admin", "password": PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/fhir+json"}

        n = args.single
        bodies = [orjson.dumps(observation(serials[i % len(serials)], clock.next(), rng)) for i in range(n)]
        started = time.perf_counter()
        for body in bodies:
            assert client.post("/fhir/Observation", content=body, headers=headers).status_code == 201
        single = n / (time.perf_counter() - started)
        report("single creates", n, single, raw_copy_rate(engine, n, patient_ids, device_ids))

        n = args.bundles * 100
        bundles = [
            orjson.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": observation(serials[(b * 100 + i) % len(serials)], clock.next(), rng),
                            "request": {"method": "POST", "url": "Observation"},
                        }
                        for i in range(100)
                    ],
                }
            )
            for b in range(args.bundles)
        ]
        started = time.perf_counter()
        for body in bundles:
            response = client.post("/fhir", content=body, headers=headers)
            assert response.status_code == 200, response.text[:300]
        txn = n / (time.perf_counter() - started)
        report("transaction bundles of 100", n, txn, raw_copy_rate(engine, n, patient_ids, device_ids))

    n = args.imports
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Observation.ndjson"
        with path.open("wb") as out:
            for i in range(n):
                out.write(orjson.dumps(observation(serials[i % len(serials)], clock.next(), rng)) + b"\n")
        started = time.perf_counter()
        result = bulk.import_files(session_factory(engine), system_principal(), [path])
        rate = n / (time.perf_counter() - started)
        assert result.created.get("Observation") == n and not result.errors, result.errors[:3]
    report("bulk NDJSON import", n, rate, raw_copy_rate(engine, n, patient_ids, device_ids), target=0.30)


def report(name: str, n: int, rate: float, baseline: float, target: float | None = None) -> None:
    ratio = rate / baseline
    verdict = (
        "" if target is None else f"  (target ≥ {target:.0%}: {'met' if ratio >= target else 'NOT met'})"
    )
    figures = f"{rate:>10,.0f} obs/s   raw COPY {baseline:>10,.0f} obs/s   {ratio:6.1%}"
    print(f"{name:28s} {n:>8,} obs  {figures}{verdict}")


PANEL_ROWS = (("8480-6", 130.0, "mm[Hg]"), ("8462-4", 85.0, "mm[Hg]"))
LOAD_BATCH = 1_000_000


def load_search_table(engine: Engine, observations: int, patients: int) -> list[uuid.UUID]:
    """`observations` Observations over `patients` new patients, generated on the server (INSERT …
    SELECT generate_series, no API, no Python per row): every other one a BP panel (two rows), the
    rest heart rates, one every few seconds over the last five years, patients interleaved as
    readings arrive. The reading table's secondary indexes and foreign keys are dropped for the load
    and made again afterwards from their own definitions (keys checked then, in one pass), then
    the table is analysed."""
    with Session(engine) as s:
        org_id = s.scalar(text("select id from organisation limit 1"))
        device_id = s.scalar(text("select id from device limit 1"))
    patient_table: Table = Patient.__table__  # type: ignore[assignment]
    now = utcnow()
    pids = [uuid.uuid4() for _ in range(patients)]
    started = time.perf_counter()
    with engine.begin() as conn:
        cols = ["id", "family_name", "given_name", "name", "sex", "birth_date", "province_code", "city_code",
                "district_code", "home_facility_id", "consent", "active", "deceased", "version", "created_at",
                "updated_at"]  # fmt: skip
        copy_rows(
            conn, patient_table, cols,
            ([p, "S", str(i), f"S{i}", "M", date(1955, 1, 1), "330000", "330100", "330102", org_id, {}, True,
              False, 1, now, now] for i, p in enumerate(pids)),
        )  # fmt: skip
        conn.execute(text("CREATE TABLE bench_patient (k int PRIMARY KEY, id uuid NOT NULL)"))
        copy_rows(conn, Table("bench_patient", MetaData()), ["k", "id"], enumerate(pids))
        constraints = conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'reading'::regclass AND contype = 'f'"
            )
        ).all()
        indexes = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'reading' "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
        ).all()
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
        for name, _ in constraints:
            conn.execute(text(f'ALTER TABLE reading DROP CONSTRAINT "{name}"'))
    step = timedelta(days=5 * 365) / observations
    panel = ", ".join(f"('{code}', {value}, '{unit}', true)" for code, value, unit in PANEL_ROWS)
    insert = text(
        f"""
        INSERT INTO reading ({", ".join(READING_COLUMNS)})
        SELECT gen_random_uuid(), p.id, :device, v.code, v.value, v.unit, o.at, :now,
               CASE WHEN o.is_panel THEN o.panel_id END, 'bench'
        FROM (SELECT g, CAST(:start AS timestamptz) + g * CAST(:step AS interval) AS at,
                     g % 2 = 1 AS is_panel, gen_random_uuid() AS panel_id,
                     (g * 7919) % :patients AS k
              FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) g) o
        JOIN bench_patient p ON p.k = o.k
        JOIN (VALUES {panel}, ('8867-4', 70.0, '/min', false)) v (code, value, unit, in_panel)
          ON v.in_panel = o.is_panel
        """
    )
    for low in range(0, observations, LOAD_BATCH):
        with engine.begin() as conn:
            conn.execute(
                insert,
                {"device": device_id, "now": now, "start": now - timedelta(days=5 * 365), "step": step,
                 "patients": patients, "low": low, "high": min(low + LOAD_BATCH, observations) - 1},
            )  # fmt: skip
    loaded = time.perf_counter() - started
    with engine.begin() as conn:
        for name, definition in constraints:
            conn.execute(text(f'ALTER TABLE reading ADD CONSTRAINT "{name}" {definition}'))
        for _, definition in indexes:
            conn.execute(text(definition))
        conn.execute(text("DROP TABLE bench_patient"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE reading"))
    print(
        f"loaded {observations:,} observations over {patients:,} patients in {loaded:.0f} s, "
        f"indexed and analysed in {time.perf_counter() - started - loaded:.0f} s"
    )
    return pids


def searches(pids: list[uuid.UUID], rng: random.Random) -> dict[str, Callable[[], dict[str, str]]]:
    """The common searches, each a function giving its next query (a random patient)."""
    since = (utcnow() - timedelta(days=365)).date().isoformat()
    return {
        "patient+code+date": lambda: {
            "patient": str(rng.choice(pids)), "code": "85354-9", "date": f"ge{since}", "_count": "20",
        },
        "patient+date, _sort=-date": lambda: {
            "patient": str(rng.choice(pids)), "date": f"ge{since}", "_sort": "-date", "_count": "20",
        },
        "patient, _sort=-date": lambda: {"patient": str(rng.choice(pids)), "_sort": "-date", "_count": "20"},
        "code+date": lambda: {"code": "8867-4", "date": f"ge{since}", "_count": "20"},
        "code+date, _sort=-date": lambda: {"code": "85354-9", "date": f"ge{since}", "_sort": "-date"},
        "_count=20": lambda: {"_count": "20"},
        "_sort=-date": lambda: {"_sort": "-date", "_count": "20"},
    }  # fmt: skip


def bench_search(engine: Engine, args: argparse.Namespace) -> None:
    pids = load_search_table(engine, args.observations, args.patients)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), log_level="WARNING")
    rng = random.Random(3)
    with TestClient(create_app(settings, engine=engine)) as client:
        for user in ("admin", "doc"):
            token = client.post(
                "/api/v1/auth/token", data={"grant_type": "password", "username": user, "password": PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            print(f"search over {args.observations:,} observations as {user} (ms; totals as returned):")
            for name, query in searches(pids, rng).items():
                if args.explain and user == "admin":
                    explain(engine, client, headers, query())
                timings, totals = [], []
                for i in range(args.searches + 5):
                    params = query()
                    started = time.perf_counter()
                    response = client.get("/fhir/Observation", params=params, headers=headers)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text[:300]
                    if i >= 5:  # warm-up excluded
                        timings.append(elapsed)
                        totals.append(response.json().get("total"))
                timings.sort()
                p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
                shown = {t for t in totals if t is not None}
                total = f"total {min(shown)}–{max(shown)}" if shown else "no total"
                print(f"  {name:28s} p50 {statistics.median(timings):7.1f}  p95 {p95:7.1f}   ({total})")


def explain(engine: Engine, client: TestClient, headers: dict[str, str], params: dict[str, str]) -> None:
    """EXPLAIN ANALYZE of the SQL one search runs against the reading table."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM reading" in statement and "EXPLAIN" not in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        client.get("/fhir/Observation", params=params, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    print(f"  EXPLAIN ANALYZE {params}")
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, parameters in seen:
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, parameters)
                for (line,) in cur.fetchall():
                    print(f"    {line}")
        conn.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default=os.environ.get("MEDLOOP_TEST_PG_URL"))
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--single", type=int, default=1000, help="single creates")
    parser.add_argument("--bundles", type=int, default=30, help="transaction bundles of 100")
    parser.add_argument("--imports", type=int, default=100_000, help="observations in the NDJSON import")
    parser.add_argument("--observations", type=int, default=1_000_000, help="rows for the search benchmark")
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=200, help="timed searches per kind")
    parser.add_argument("--only", choices=("writes", "search"), help="run one half of the benchmark")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each search")
    args = parser.parse_args()
    if not args.pg_url:
        raise SystemExit("set MEDLOOP_TEST_PG_URL (a PostgreSQL admin URL) or pass --pg-url")
    os.environ.setdefault("MEDLOOP_ARGON2_TIME_COST", "1")
    os.environ.setdefault("MEDLOOP_ARGON2_MEMORY_KIB", "64")
    with scratch_database(args.pg_url, prefix="medloop_bench_fhir") as engine:
        serials = setup(engine, args.devices)
        print(f"PostgreSQL {engine.dialect.server_version_info}; {os.cpu_count()} CPUs")
        if args.only in (None, "writes"):
            bench_writes(engine, serials, args)
        if args.only in (None, "search"):
            bench_search(engine, args)


if __name__ == "__main__":
    main()
