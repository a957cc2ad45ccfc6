"""`make demo` / `medloop demo`: the whole course for a living synthetic region, on the embedded
default (SQLite), with nothing else installed.

1. migrate the database; build the region (≈20,000 residents, 30 facilities of every tier);
2. screen the whole population with the population models and store the risk assessments, dated
   as a baseline campaign five months ago;
3. bind simulated devices to patients and backfill two weeks of their readings (through the real
   ingestion pipeline, in-process);
4. enrol: the programmes engine takes the screening results and device alerts as events; most
   hypertension patients have had a clinic visit (office BP) in the last three months; the KPIs
   of every month since the baseline are refreshed (the region overview reads them);
5. serve the API and the dashboards, stream live device readings to the server over HTTP from a
   background thread (so the dashboards move and alerts appear) and keep the programmes current;
6. print the URL and the demo logins. Ctrl-C stops the server and both background threads.

Every step is idempotent: a second run on the same data directory reuses what is there."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson
import polars as pl
import uvicorn
from rich.console import Console
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from medloop.app import create_app
from medloop.auth.models import Role, User
from medloop.auth.service import create_user, grant_token
from medloop.devices.models import Reading
from medloop.network.models import Organisation, Tier
from medloop.screening.models import RiskAssessment
from medloop.screening.runner import ScreenOptions, run_screen
from medloop.settings import Settings
from medloop.sim import devices as device_sim
from medloop.sim.writer import build_region_outputs
from medloop.store import migrate
from medloop.store.base import utcnow
from medloop.store.engine import make_engine, session_scope

log = logging.getLogger("medloop.demo")

DEMO_PASSWORD = "medloop-demo"
SCREENING_SOURCE = "demo-baseline"
BASELINE_DAYS_AGO = 150  # so that the programmes' cohorts (enrolled > 3 months) have members
VISIT_SHARE = 0.8  # hypertension patients seen in clinic within the last three months
CONTROLLED_SHARE = 0.55  # of those, seen again since and on target
DEVICES = 300
BACKFILL_DAYS = 7
BACKFILL_INTERVAL_S = 8 * 3600.0
LIVE_TICK_S = 5.0
LIVE_PER_TICK = 25  # devices per tick: each of 300 devices reads about once a minute
PROGRAMME_EVERY_S = 30.0
# Live faults: fewer than the simulator's defaults, so the dead-letter table grows but slowly.
LIVE_FAULTS = device_sim.FaultRates(
    duplicate=0.02, late=0.0, wrong_unit=0.005, impossible=0.005, clock_skew=0.005, unknown_device=0.005
)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    facility: str | None
    what: str


def _first(session: Session, tier: Tier) -> str:
    code = session.scalar(
        select(Organisation.code).where(Organisation.tier == tier).order_by(Organisation.code)
    )
    if code is None:
        raise RuntimeError(f"the demo region has no {tier.value} facility")
    return code


def demo_logins(session: Session) -> list[DemoLogin]:
    hub, county, chc = (
        _first(session, Tier.TERTIARY_HUB),
        _first(session, Tier.SECONDARY),
        _first(session, Tier.PRIMARY),
    )
    return [
        DemoLogin("admin", Role.ADMIN, None, "everything, incl. users and the audit trail"),
        DemoLogin("manager", Role.PROGRAMME_MANAGER, hub, "programme KPIs for the whole region"),
        DemoLogin("doctor", Role.CLINICIAN, chc, f"patients of community centre {chc}"),
        DemoLogin("county-doctor", Role.CLINICIAN, county, f"patients of {county} and the centres below it"),
        DemoLogin("screener", Role.SCREENER, hub, "screening campaigns across the region"),
        DemoLogin("partner", Role.PARTNER, hub, "innovation partner (no patient data)"),
    ]


def ensure_logins(session: Session) -> list[DemoLogin]:
    logins = demo_logins(session)
    for login in logins:
        if session.scalar(select(User.id).where(User.username == login.username)) is None:
            create_user(
                session,
                login.username,
                DEMO_PASSWORD,
                [login.role],
                [login.facility] if login.facility else [],
            )
    session.commit()
    return logins


def step(text: str) -> Callable[[str], None]:
    """Print a step and return a function that prints its outcome with the time it took."""
    started = time.perf_counter()
    print(f"• {text} …", flush=True)

    def done(outcome: str) -> None:
        print(f"  {outcome} ({time.perf_counter() - started:.1f} s)", flush=True)

    return done


def build_region(settings: Settings, people: int, seed: int, data_dir: Path) -> Path:
    done = step(f"building a synthetic region of {people:,} residents (seed {seed})")
    population = data_dir / "population.parquet"
    summary = build_region_outputs(
        people,
        30,
        seed,
        out=population,
        database_url=settings.database_url,
        identifier_key=settings.identifier_key,
        replace=True,
    )
    done(f"{summary.facilities} facilities, {summary.people:,} residents ({summary.status})")
    return population


def screen_population(engine: Engine, settings: Settings, population: Path, data_dir: Path) -> None:
    """Screen every resident with the population models and store the risk assessments."""
    with Session(engine) as session:
        already = session.scalar(
            select(func.count()).select_from(RiskAssessment).where(RiskAssessment.source == SCREENING_SOURCE)
        )
    if already:
        print(f"• screening: {already:,} stored risk assessments found, not screening again", flush=True)
        return
    done = step("screening the population (all population models) and storing risk assessments")
    keyed = data_dir / "population-by-patient.parquet"
    pl.read_parquet(population).rename({"person_id": "patient_id"}).write_parquet(keyed)
    report = run_screen(
        ScreenOptions(
            input=keyed,
            output=data_dir / "screening-results.parquet",
            referrals=data_dir / "screening-referrals.csv",
            database_url=settings.database_url,
            store=True,
            source=SCREENING_SOURCE,
        ),
        Console(quiet=True),
    )
    keyed.unlink(missing_ok=True)
    with session_scope(engine) as session:  # the baseline campaign took place months ago
        session.execute(
            update(RiskAssessment)
            .where(RiskAssessment.source == SCREENING_SOURCE)
            .values(assessed_at=utcnow() - timedelta(days=BASELINE_DAYS_AGO))
        )
    done(
        f"{report.summary.rows:,} people screened, {report.stored:,} assessments, "
        f"{report.referrals:,} referrals"
    )


def backfill_devices(engine: Engine, settings: Settings, seed: int) -> None:
    """Bind the simulated devices and send two weeks of their readings through the pipeline."""
    with Session(engine) as session:
        readings = session.scalar(select(func.count()).select_from(Reading)) or 0
    if readings:
        print(f"• devices: {readings:,} readings found, not backfilling again", flush=True)
        return
    done = step(f"binding {DEVICES} simulated devices and backfilling {BACKFILL_DAYS} days of readings")
    stats = device_sim.simulate(
        settings,
        devices=DEVICES,
        minutes=BACKFILL_DAYS * 24 * 60,
        interval_s=BACKFILL_INTERVAL_S,
        seed=seed,
        batch=500,
    )
    done(f"{stats.readings:,} readings generated, outcomes: {dict(sorted(stats.outcomes.items()))}")


def run_programmes(engine: Engine, *, quiet: bool = False) -> str:
    """Feed screening results, device alerts and home BP to the programmes engine, let time pass to
    now, and refresh this month's KPIs."""
    from medloop.programs import feeds, kpi, service

    with session_scope(engine) as session:
        fed = feeds.sync_screening(session) + feeds.sync_device_alerts(session) + feeds.sync_home_bp(session)
        stats = service.process_pending(session)
        ticks = service.advance_time(session, utcnow())
        kpi.refresh(session, utcnow().date().replace(day=1))
    outcome = (
        f"{fed:,} events, {stats.enrolled:,} enrolled, {stats.enrolments_updated:,} updated, {ticks:,} ticks"
    )
    if not quiet:
        log.info("programmes updated", extra={"events": fed, "enrolled": stats.enrolled, "ticks": ticks})
    return outcome


def clinic_visits(engine: Engine, seed: int) -> int:
    """Clinic visits with an office BP (what the BP control KPI counts; home readings do not): most
    hypertension patients had a visit two to three months ago that confirmed a raised BP, and some
    of them a follow-up visit since, on target. Deterministic event ids: a second run adds nothing."""
    from medloop.programs import service
    from medloop.programs.models import Enrolment

    rng = random.Random(seed)
    now = utcnow()
    with session_scope(engine) as session:
        patients = session.execute(
            select(Enrolment.patient_id, Enrolment.facility_id)
            .where(Enrolment.programme == "hypertension", Enrolment.status == "active")
            .order_by(Enrolment.patient_id)
        ).all()
        events = []
        for patient_id, facility_id in patients:
            if rng.random() >= VISIT_SHARE:
                continue
            visits = [(rng.uniform(55, 85), rng.randint(140, 178), rng.randint(80, 108))]
            if rng.random() < CONTROLLED_SHARE:
                visits.append((rng.uniform(3, 40), rng.randint(112, 138), rng.randint(68, 88)))
            events += [
                service.NewEvent(
                    f"demo-visit-{patient_id}-{n}",
                    patient_id,
                    "visit",
                    now - timedelta(days=days_ago),
                    {"sbp": float(sbp), "dbp": float(dbp)},
                    facility_id=facility_id,
                )
                for n, (days_ago, sbp, dbp) in enumerate(visits)
            ]
        service.ingest_events(session, events, "demo")
    return len(events)


def enrol(engine: Engine, seed: int) -> None:
    from medloop.programs import kpi

    done = step("enrolling: screening results, device alerts and clinic visits; KPIs since the baseline")
    outcome = run_programmes(engine, quiet=True)
    visits = clinic_visits(engine, seed)
    run_programmes(engine, quiet=True)  # applies the visits, refreshes this month's KPIs
    today = utcnow().date()
    with session_scope(engine) as session:
        for back in range(1, BASELINE_DAYS_AGO // 30 + 2):
            index = today.year * 12 + today.month - 1 - back
            kpi.refresh(session, date(index // 12, index % 12 + 1, 1))
    done(f"{outcome}; {visits:,} clinic visits")


class LiveStream:
    """Streams simulated readings to the running server over HTTP (the device gateway's token),
    a slice of the fleet every few seconds, and keeps the programmes current. `stop()` ends both
    loops and joins their threads."""

    def __init__(self, engine: Engine, settings: Settings, url: str, seed: int) -> None:
        self.engine, self.settings, self.url, self.seed = engine, settings, url, seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sent = 0
        self.errors = 0

    def start(self) -> None:
        with session_scope(self.engine) as session:
            self.fleet = device_sim.provision(session, DEVICES, self.seed)
        for target, name in ((self._stream, "demo-devices"), (self._programmes, "demo-programmes")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _token(self) -> str:
        with session_scope(self.engine) as session:
            user = session.scalar(select(User).where(User.username == device_sim.GATEWAY_USER))
            assert user is not None
            return grant_token(session, self.settings, user, None).access_token

    def _stream(self) -> None:
        tz = ZoneInfo(self.settings.timezone)
        token, issued = self._token(), time.monotonic()
        tick = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.wait(LIVE_TICK_S):
                if time.monotonic() - issued > self.settings.access_token_minutes * 30:
                    token, issued = self._token(), time.monotonic()
                start = (tick * LIVE_PER_TICK) % len(self.fleet)
                part = (self.fleet + self.fleet)[start : start + LIVE_PER_TICK]
                stats = device_sim.SimStats()
                now = utcnow() - timedelta(seconds=LIVE_TICK_S)
                items = device_sim.generate(
                    part, now, LIVE_TICK_S / 60, LIVE_TICK_S, LIVE_FAULTS, self.seed + tick, tz, stats
                )
                batch = [{**reading, "device": serial} for serial, reading in items]
                tick += 1
                try:
                    response = client.post(
                        "/api/v1/readings",
                        content=orjson.dumps({"readings": batch}),
                        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
                    )
                    self.sent += len(batch) if response.status_code in (200, 422) else 0
                except httpx.HTTPError:
                    self.errors += 1  # the server is stopping or busy: try again next tick

    def _programmes(self) -> None:
        while not self._stop.wait(PROGRAMME_EVERY_S):
            try:
                run_programmes(self.engine)
            except Exception as exc:  # keep the demo alive; the next round tries again
                log.warning("programme update failed", extra={"error_type": type(exc).__name__})


def prepare(settings: Settings, people: int, seed: int, data_dir: Path) -> list[DemoLogin]:
    """Everything before serving (idempotent for the same arguments)."""
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    population = build_region(settings, people, seed, data_dir)
    with Session(engine) as session:
        logins = ensure_logins(session)
    screen_population(engine, settings, population, data_dir)
    backfill_devices(engine, settings, seed)
    enrol(engine, seed)
    engine.dispose()
    return logins


def banner(settings: Settings, logins: list[DemoLogin]) -> str:
    url = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        f"medloop demo is running at {url}",
        f"  dashboards: {url}/web/   (English / 简体中文: switch at the top right)",
        f"  API docs:   {url}/docs    health: {url}/health",
        f"  API login:  curl -d grant_type=password -d username=doctor -d password={DEMO_PASSWORD} "
        f"{url}/api/v1/auth/token",
        f"  live: {DEVICES} simulated devices stream readings over HTTP; programmes update every "
        f"{PROGRAMME_EVERY_S:.0f} s",
        "",
        f"demo logins (password for all: {DEMO_PASSWORD}):",
        *(f"  {lg.username:<14} {lg.role:<18} {lg.what}" for lg in logins),
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _wait_until_serving(server: uvicorn.Server, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline:
        if server.should_exit:
            return False
        time.sleep(0.1)
    return server.started


def quiet_logs() -> None:
    """The demo's console is for people: request logs and migration chatter stay below WARNING."""
    for name in ("httpx", "medloop.access", "alembic", "medloop.sim.writer"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(settings: Settings, people: int = 20_000, seed: int = 1, data_dir: Path = Path("demo-data")) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    quiet_logs()
    try:
        logins = prepare(settings, people, seed, data_dir)
    except KeyboardInterrupt:
        print("\nmedloop demo stopped while preparing; run it again to carry on.", flush=True)
        return
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    stream = LiveStream(app.state.engine, settings, f"http://{settings.host}:{settings.port}", seed)

    def start_stream_when_serving() -> None:
        if _wait_until_serving(server):
            stream.start()
            print(banner(settings, logins), flush=True)

    starter = threading.Thread(target=start_stream_when_serving, name="demo-start", daemon=True)
    starter.start()
    try:
        server.run()  # in the main thread: handles SIGINT/SIGTERM, finishes requests, then returns
    finally:
        starter.join(timeout=5)
        stream.stop()
        runner = getattr(app.state, "web_campaigns", None)
        if runner is not None:
            runner.close()
        app.state.engine.dispose()
    print(f"medloop demo stopped ({stream.sent:,} live readings sent).", flush=True)
