"""Server time of each dashboard page (p50/p95), against a trivial endpoint (`/health`) measured in
the same run, in-process (ASGI, no network), as three users: `admin` (everything), `manager`
(programme manager of the hub: the whole region) and `doctor` (a community centre's clinician).

PostgreSQL (the issue's data set): `--postgres` creates a scratch database next to
MEDLOOP_TEST_PG_URL (an admin URL) and drops it afterwards (`--keep` keeps it and prints its URL;
time it again with `--database-url URL --skip-build`). The data set is built on the server with
generate_series (`bench/dataset.py`: patients, enrolments, visits, referrals, devices and their
readings, alerts, MDT cases, demo logins, 12 months of KPIs):

    flock /tmp/medloop-heavy.lock .venv/bin/python bench/web.py --postgres --patients 1000000

SQLite (quick runs, the default): the demo's path on a small region — the region simulator,
screening, the device simulator, enrolment and a KPI refresh:

    .venv/bin/python bench/web.py --patients 20000

Target (issue 7): p95 < 150 ms per page on the 1M-patient PostgreSQL data set. The overview's
figures are cached for 30 s per scope; the overview is timed cold (cache cleared before every
request) and warm. The app freezes its start-up objects out of the garbage collector's way (see
`medloop.app`): unfrozen, a full collection walked ~220k objects (~120 ms here) every few
requests and set the p95 of the heavier pages."""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("MEDLOOP_ARGON2_TIME_COST", "1")
os.environ.setdefault("MEDLOOP_ARGON2_MEMORY_KIB", "64")
os.environ.setdefault("MEDLOOP_LOG_LEVEL", "WARNING")
# Run as a script, bench/ comes first on the path and bench/fhir.py would hide the fhir package:
# move it to the end (append, then remove the first occurrence), and put the repository first.
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dataset import add_dashboard_data, generate
from bench.scratch import scratch_database
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.app import create_app
from medloop.demo import DEMO_PASSWORD, enrol, ensure_logins, screen_population
from medloop.devices.models import DeviceBinding
from medloop.network.models import Organisation, Tier
from medloop.people.models import Patient
from medloop.settings import Settings
from medloop.sim import devices as device_sim
from medloop.sim.writer import build_region_outputs
from medloop.store import migrate
from medloop.store.engine import make_engine
from medloop.web.overview import overview_cache

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
USERS = ("admin", "manager", "doctor")


def build_sqlite(url: str, patients: int, data_dir: Path) -> None:
    settings = Settings(database_url=url, log_level="WARNING")
    engine = make_engine(url)
    migrate.upgrade(engine)
    population = data_dir / "population.parquet"
    build_region_outputs(
        patients,
        30,
        1,
        out=population,
        database_url=url,
        identifier_key=settings.identifier_key,
        replace=True,
    )
    with Session(engine) as session:
        ensure_logins(session)
    screen_population(engine, settings, population, data_dir)
    device_sim.simulate(settings, devices=200, minutes=3 * 24 * 60, interval_s=8 * 3600, batch=2000)
    enrol(engine, 1)
    engine.dispose()


@contextmanager
def database(args: argparse.Namespace, data_dir: Path) -> Iterator[str]:
    """The database URL to time, built as asked."""
    if args.postgres:
        admin_url = os.environ.get("MEDLOOP_TEST_PG_URL")
        if not admin_url:
            sys.exit("--postgres needs MEDLOOP_TEST_PG_URL (a PostgreSQL admin URL)")
        with scratch_database(admin_url, keep=args.keep) as engine:
            generate(engine, args.patients)
            add_dashboard_data(engine, args.kpi_months)
            yield engine.url.render_as_string(hide_password=False)
        return
    url = args.database_url or f"sqlite:///{data_dir / 'bench.db'}"
    if not args.skip_build:
        if url.startswith("postgresql"):
            engine = make_engine(url)
            migrate.upgrade(engine)
            generate(engine, args.patients)
            add_dashboard_data(engine, args.kpi_months)
            engine.dispose()
        else:
            build_sqlite(url, args.patients, data_dir)
    yield url


def login(client: TestClient, username: str) -> None:
    client.cookies.clear()
    token = CSRF.search(client.get("/web/login").text)
    assert token
    response = client.post(
        "/web/login",
        data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def timed(client: TestClient, path: str, runs: int, *, cold: bool = False) -> list[float]:
    out = []
    for _ in range(runs):
        if cold:
            overview_cache.clear()
        started = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def targets(url: str) -> tuple[str, str, str]:
    """The doctor's community centre, its district, and a patient of it with a device."""
    engine = make_engine(url)
    with Session(engine) as session:
        chc = session.execute(
            select(Organisation.id, Organisation.code, Organisation.district_code)
            .where(Organisation.tier == Tier.PRIMARY)
            .order_by(Organisation.code)
            .limit(1)
        ).one()
        patient = session.scalar(
            select(Patient.id)
            .join(DeviceBinding, DeviceBinding.patient_id == Patient.id)
            .where(Patient.home_facility_id == chc.id)
            .order_by(Patient.id)
            .limit(1)
        ) or session.scalar(select(Patient.id).where(Patient.home_facility_id == chc.id).limit(1))
    engine.dispose()
    return chc.code, chc.district_code, str(patient)


def pages(user: str, facility: str, district: str, patient: str) -> dict[str, tuple[str, bool]]:
    """name → (path, cold): the pages each user may open."""
    out = {
        "overview region (cold)": ("/web/", True),
        "overview region": ("/web/", False),
        "overview district (cold)": (f"/web/?district={district}", True),
        "overview facility (cold)": (f"/web/?facility={facility}", True),
        "worklist": ("/web/worklist", False),
        "worklist lost": ("/web/worklist?list=lost", False),
        "mdt": ("/web/mdt", False),
        "patient timeline": (f"/web/patients/{patient}", False),
        "devices": ("/web/devices", False),
        "screening": ("/web/screening", False),
    }
    if user == "doctor":
        del out["screening"]  # a clinician has no screening page
    else:
        del out["worklist"], out["worklist lost"]  # worklists are a clinician's
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=30, help="requests timed per page and user")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", default=None, help="build in (or, with --skip-build, reuse) this")
    where.add_argument("--postgres", action="store_true", help="a scratch database from MEDLOOP_TEST_PG_URL")
    parser.add_argument("--keep", action="store_true", help="keep the --postgres scratch database")
    parser.add_argument("--skip-build", action="store_true", help="reuse the data set in --database-url")
    parser.add_argument("--kpi-months", type=int, default=12, help="months of KPIs (PostgreSQL data set)")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="medloop-bench-web-"))
    with database(args, data_dir) as url:
        rows = run(url, args)
    dialect = url.split(":")[0].split("+")[0]
    print(f"\npatients {args.patients:,} · runs {args.runs} · {dialect} · in-process ASGI")
    print(f"{'user':<8} {'page':<26} {'p50 ms':>8} {'p95 ms':>8} {'p95 / health':>13}  target p95 < 150 ms")
    for user, name, p50, p95_, ratio in rows:
        mark = "" if name.startswith("/health") else ("ok" if p95_ < 150 else "MISSED")
        print(f"{user:<8} {name:<26} {p50:>8.1f} {p95_:>8.1f} {ratio:>13.1f}  {mark}")


def run(url: str, args: argparse.Namespace) -> list[tuple[str, str, float, float, float]]:
    started = time.perf_counter()
    facility, district, patient = targets(url)
    settings = Settings(database_url=url, log_level="WARNING")
    rows = []
    with TestClient(create_app(settings)) as client:
        print(f"timing as {', '.join(USERS)} (facility {facility}, district {district})", flush=True)
        print(f"{gc.get_freeze_count():,} start-up objects frozen by the app", flush=True)
        for user in USERS:
            login(client, user)
            health = timed(client, "/health", args.runs)
            for name, (path, cold) in pages(user, facility, district, patient).items():
                timed(client, path, 1, cold=cold)  # the first request of a page warms the app's own caches
                times = timed(client, path, args.runs, cold=cold)
                rows.append((user, name, statistics.median(times), p95(times), p95(times) / p95(health)))
            rows.append((user, "/health (baseline)", statistics.median(health), p95(health), 1.0))
    print(f"timed in {time.perf_counter() - started:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()
