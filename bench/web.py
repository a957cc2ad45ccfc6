"""Server time of each dashboard page (p50/p95), against a trivial endpoint (`/health`) measured in
the same run. Builds a synthetic region of `--patients` residents (screened, with simulated device
readings) in the database given (`--database-url`, default a fresh SQLite file), then times each
page in-process (ASGI, no network) as an admin and as a community-centre clinician.

    .venv/bin/python bench/web.py --patients 20000
    .venv/bin/python bench/web.py --patients 100000 --database-url postgresql+psycopg://…/bench

Target (issue 7): p95 < 150 ms per page on the 1M-patient PostgreSQL dataset. The overview's
figures are cached for 30 s per scope; both the cold (first) and the warm times are reported."""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MEDLOOP_ARGON2_TIME_COST", "1")
os.environ.setdefault("MEDLOOP_ARGON2_MEMORY_KIB", "64")
os.environ.setdefault("MEDLOOP_LOG_LEVEL", "WARNING")

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.app import create_app
from medloop.demo import DEMO_PASSWORD, ensure_logins, screen_population
from medloop.people.models import Patient
from medloop.settings import Settings
from medloop.sim import devices as device_sim
from medloop.sim.writer import build_region_outputs
from medloop.store import migrate
from medloop.store.engine import make_engine
from medloop.web.overview import overview_cache

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def build(settings: Settings, patients: int, data_dir: Path) -> None:
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    population = data_dir / "population.parquet"
    build_region_outputs(
        patients,
        30,
        1,
        out=population,
        database_url=settings.database_url,
        identifier_key=settings.identifier_key,
        replace=True,
    )
    with Session(engine) as session:
        ensure_logins(session)
    screen_population(engine, settings, population, data_dir)
    device_sim.simulate(settings, devices=200, minutes=3 * 24 * 60, interval_s=8 * 3600, batch=2000)
    engine.dispose()


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


def timed(client: TestClient, path: str, runs: int, *, warm_cache: bool = True) -> list[float]:
    out = []
    for _ in range(runs):
        if not warm_cache:
            overview_cache.clear()
        started = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--skip-build", action="store_true", help="reuse the region already in the database")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="medloop-bench-web-"))
    url = args.database_url or f"sqlite:///{data_dir / 'bench.db'}"
    settings = Settings(database_url=url, log_level="WARNING")
    if not args.skip_build:
        started = time.perf_counter()
        build(settings, args.patients, data_dir)
        print(
            f"built {args.patients:,} patients in {time.perf_counter() - started:.0f} s ({url.split(':')[0]})"
        )
    client = TestClient(create_app(settings))
    with Session(make_engine(url)) as session:
        patient_id = session.scalar(select(Patient.id).order_by(Patient.id).limit(1))
    rows = []
    for user in ("admin", "doctor"):
        login(client, user)
        health = timed(client, "/health", args.runs)
        pages = {
            "overview (cold)": ("/web/", False),
            "overview (warm)": ("/web/", True),
            "devices": ("/web/devices", True),
            "patient timeline": (f"/web/patients/{patient_id}", True),
            "screening": ("/web/screening", True),
        }
        try:
            import medloop.programs.worklist  # noqa: F401

            pages["worklist" if user == "doctor" else "mdt"] = (
                "/web/worklist" if user == "doctor" else "/web/mdt",
                True,
            )
        except ImportError:
            pass
        for name, (path, warm) in pages.items():
            if user == "doctor" and name in ("screening", "patient timeline"):
                continue  # a clinician has no screening page; the patient may be outside their scope
            times = timed(client, path, args.runs if warm else max(5, args.runs // 3), warm_cache=warm)
            rows.append((user, name, statistics.median(times), p95(times), p95(times) / p95(health)))
        rows.append((user, "/health (baseline)", statistics.median(health), p95(health), 1.0))
    print(f"\npatients {args.patients:,} · runs {args.runs} · database {url.split(':')[0]} · in-process ASGI")
    print(f"{'user':<8} {'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'p95 / health':>13}")
    for user, name, p50, p95_, ratio in rows:
        print(f"{user:<8} {name:<22} {p50:>8.1f} {p95_:>8.1f} {ratio:>13.1f}")


if __name__ == "__main__":
    main()
