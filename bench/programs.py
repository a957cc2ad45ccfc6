"""Programmes benchmark, on PostgreSQL (MEDLOOP_TEST_PG_URL, an admin URL: a scratch database is
created and dropped). Builds a region of N hypertension enrolments with 12 months of clinic visits
and home BP readings, screening results, referrals and Chest Pain Center cases — all with
INSERT … SELECT generate_series on the server — then measures, each against a baseline measured in
the same run:

1. Worklist (GET /api/v1/worklists/overdue's service call: facility scope, risk order, count +
page, audit): p50/p95 over random facilities, for a community clinician and for a hub-level
user, vs the bare indexed query (no scope, no join). Target: p95 < 100 ms.
2. Monthly KPI refresh (every family, three levels): wall time vs one bare scan of the same
tables. Target: < 60 s at 1M enrolled patients.
3. Engine throughput: events/s of `ingest_events` + `process_pending` (derive with the clinical
models, store, route, advance, write state and tasks, audit) for fresh enrolments, vs a plain
COPY of the same event rows (and the pure in-memory engine, for where the time goes).

python bench/programs.py                        # 100,000 enrolled patients (default)
python bench/programs.py --patients 1000000     # the issue's size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medloop.auth.principal import Principal
from medloop.network.models import Organisation
from medloop.programs import kpi, service, worklist
from medloop.programs.definitions import load_definitions
from medloop.programs.derive import derive
from medloop.programs.engine import Event, State, advance, run, seed_event
from medloop.store import migrate
from medloop.store.base import utcnow
from medloop.store.bulk import copy_rows
from medloop.store.engine import make_engine

RESIDENTS_PER_FACILITY = 800  # as the simulated region (sim/data/region.yaml)
DISTRICTS = 10


@contextmanager
def scratch_database(admin_url: str) -> Iterator[Engine]:
    name = f"medloop_bench_programs_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed(label: str, fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    took = time.perf_counter() - started
    print(f"  {label:<58} {took:8.1f} s", flush=True)
    return took


# --- the data set --------------------------------------------------------------------------------


def facilities(session: Session, n_patients: int) -> list[uuid.UUID]:
    """A hub, a county hospital per district and community centres (one per 800 residents).
    Returns the community centres' ids."""
    hub = Organisation(
        code="HUB",
        name="Hub",
        tier="tertiary_hub",
        province_code="370000",
        city_code="379900",
        district_code="379902",
        latitude=36.2,
        longitude=117.6,
        capabilities=["cath_lab", "chest_pain_center", "ldct", "oncology_mdt", "spirometry", "lab"],
    )
    session.add(hub)
    session.flush()
    rng = random.Random(7)
    chcs = []
    n_chc = max(DISTRICTS, n_patients // RESIDENTS_PER_FACILITY)
    for d in range(DISTRICTS):
        district = f"3799{d + 2:02d}"
        county = Organisation(
            code=f"CNTY-{d:02d}",
            name=f"County {d}",
            tier="secondary",
            parent_id=hub.id,
            province_code="370000",
            city_code="379900",
            district_code=district,
            latitude=36 + rng.random(),
            longitude=117 + rng.random(),
            capabilities=["lab", "spirometry"],
        )
        session.add(county)
        session.flush()
        for i in range(n_chc // DISTRICTS):
            chc = Organisation(
                code=f"CHC-{d:02d}-{i:04d}",
                name=f"CHC {d}-{i}",
                tier="primary",
                parent_id=county.id,
                province_code="370000",
                city_code="379900",
                district_code=district,
                latitude=36 + rng.random(),
                longitude=117 + rng.random(),
                capabilities=["primary_care"],
            )
            session.add(chc)
            chcs.append(chc)
    session.flush()
    return [c.id for c in chcs]


def generate(engine: Engine, n: int) -> list[uuid.UUID]:
    print(f"generating {n:,} enrolled patients with 12 months of visits and home BP readings", flush=True)
    with Session(engine) as s:
        chcs = facilities(s, n)
        s.commit()
    now = utcnow()
    sql = {
        "facility index": """
    CREATE TEMP TABLE bench_fac AS
    SELECT row_number() OVER (ORDER BY code) AS rn, id, district_code
    FROM organisation WHERE tier = 'primary'""",
        "patients": """
    INSERT INTO patient (id, family_name, given_name, name, sex, birth_date, province_code, city_code,
                       district_code, home_facility_id, consent, active, deceased, version, created_at,
                       updated_at)
    SELECT gen_random_uuid(), 'P', i::text, 'P' || i, CASE WHEN i % 2 = 0 THEN 'M' ELSE 'F' END,
         date '1950-01-01' + (random() * 12000)::int, '370000', '379900', f.district_code, f.id,
         '{}', true, false, 1, :now, :now
    FROM generate_series(1, :n) i JOIN bench_fac f ON f.rn = i % (SELECT count(*) FROM bench_fac) + 1""",
        "hypertension enrolments": """
    INSERT INTO programme_enrolment (id, patient_id, programme, definition_version, status, state, stage,
      step, source, facility_id, enrolled_at, enrolled_by, seed, data, next_due_at, critical, risk_score,
      updated_at)
    SELECT gen_random_uuid(), p.id, 'hypertension', 1, 'active', s.state, s.stage, s.step, 'screening',
         p.home_facility_id, :now - (100 + random() * 600) * interval '1 day', 'bench', '{}', '{}',
         :now - (random() * 560 - 90) * interval '1 day', random() < 0.02,
         CASE WHEN random() < 0.9 THEN round((random() * 30)::numeric, 1) END, :now
    FROM patient p CROSS JOIN LATERAL (
      SELECT CASE WHEN r < 0.5 THEN 'controlled' WHEN r < 0.9 THEN 'titrating' ELSE 'screened' END AS state,
             CASE WHEN r < 0.5 THEN 'follow_up' WHEN r < 0.9 THEN 'treatment' ELSE 'screening' END AS stage,
             CASE WHEN r < 0.9 THEN 1 + (r * 10)::int % 3 ELSE 0 END AS step
      FROM (SELECT random() + p.version * 0 AS r) x) s""",  # refers to p: one draw per row
        # The LATERAL parts refer to the outer row (e.critical) so that random() is drawn per row.
        "visits (about 6 a year each)": """
    INSERT INTO programme_event (id, patient_id, kind, effective_at, recorded_at, recorded_by, source,
                               facility_id, status, payload, sbp, dbp)
    SELECT gen_random_uuid()::text, e.patient_id, 'visit', t, t, 'bench', 'api', e.facility_id, 'processed',
         jsonb_build_object('sbp', sbp, 'dbp', dbp), sbp, dbp
    FROM programme_enrolment e, generate_series(1, 12) m,
       LATERAL (SELECT :now - (m * 30 - random() * 25) * interval '1 day'
                       + e.critical::int * interval '0 s' AS t,
                       round(110 + random() * 60) AS sbp, round(65 + random() * 40) AS dbp) v
    WHERE random() < 0.5""",
        "home BP readings (a fifth of patients, monthly)": """
    INSERT INTO programme_event (id, patient_id, kind, effective_at, recorded_at, recorded_by, source,
                               status, payload, sbp, dbp)
    SELECT gen_random_uuid()::text, e.patient_id, 'home_bp', t, t, 'bench', 'device', 'processed',
         jsonb_build_object('sbp', sbp, 'dbp', dbp), sbp, dbp
    FROM (SELECT * FROM programme_enrolment WHERE random() < 0.2) e, generate_series(1, 12) m,
       LATERAL (SELECT :now - (m * 30 - random() * 25) * interval '1 day'
                       + e.critical::int * interval '0 s' AS t,
                       round(115 + random() * 50) AS sbp, round(70 + random() * 30) AS dbp) v""",
        "China-PAR results (70 % screened)": """
    INSERT INTO risk_assessment (id, patient_id, model, model_version, score, category, reasons, flags,
                               assessed_at, source)
    SELECT gen_random_uuid(), patient_id, 'china_par', 'bench', risk_score,
         CASE WHEN risk_score < 5 THEN 'low' WHEN risk_score < 10 THEN 'intermediate' ELSE 'high' END,
         '[]', '[]', enrolled_at, 'bench'
    FROM programme_enrolment WHERE risk_score IS NOT NULL AND random() < 0.78""",
        "referral tasks and referrals (3 % this month)": """
    WITH t AS (
      INSERT INTO programme_task (id, enrolment_id, patient_id, programme, ref, key, kind, title, priority,
          status, due_at, opened_at, facility_id, event_id, detail, updated_at)
      SELECT gen_random_uuid(), id, patient_id, 'hypertension', 'referral#1', 'referral', 'referral',
             'Referral', 'routine', 'open', :month_start, :month_start, facility_id, 'bench', '{}', :now
      FROM programme_enrolment WHERE random() < 0.03
      RETURNING id, enrolment_id, patient_id, facility_id)
    INSERT INTO programme_referral (id, task_id, enrolment_id, patient_id, programme, task_key, capability,
      direction, reason, priority, status, requester_id, performer_id, distance_km, authored_at,
      completed_at, updated_at)
    SELECT gen_random_uuid(), t.id, t.enrolment_id, t.patient_id, 'hypertension', 'referral', 'lab', 'up',
         'Referral', 'routine', CASE WHEN random() < 0.7 THEN 'completed' ELSE 'requested' END, t.facility_id,
         t.facility_id, 10, :month_start + random() * interval '20 days', NULL, :now
    FROM t""",
        "referral completion times": """
    UPDATE programme_referral SET completed_at = authored_at + random() * interval '72 hours'
    WHERE status = 'completed'""",
        "chest pain cases with time points (0.2 %)": """
    WITH c AS (
      INSERT INTO programme_enrolment (id, patient_id, programme, definition_version, status, state, stage,
          step, source, facility_id, enrolled_at, enrolled_by, seed, data, critical, updated_at)
      SELECT gen_random_uuid(), patient_id, 'chest_pain', 1, 'active', 'rehabilitation', 'rehabilitation',
             0, 'clinician', facility_id, :month_start + random() * interval '25 days', 'bench', '{}', '{}',
             false, :now
      FROM programme_enrolment WHERE programme = 'hypertension' AND random() < 0.002
      RETURNING id, enrolled_at)
    INSERT INTO programme_timepoint (enrolment_id, name, programme, at)
    SELECT c.id, tp.name, 'chest_pain', c.enrolled_at + tp.minutes * interval '1 minute'
    FROM c CROSS JOIN LATERAL (VALUES ('fmc', 0.0), ('first_ecg', 3 + random() * 12),
       ('stemi_diagnosis', 15 + random() * 10), ('door', 40 + random() * 30),
       ('balloon', 100 + random() * 60)) AS tp(name, minutes)""",
    }
    params = {
        "n": n,
        "now": now,
        "month_start": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
    }
    with engine.begin() as conn:
        for label, statement in sql.items():
            timed(label, partial(conn.execute, text(statement), params))
        timed("ANALYZE", lambda: conn.execute(text("ANALYZE")))
    with engine.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in (
                "patient",
                "programme_enrolment",
                "programme_event",
                "risk_assessment",
                "programme_referral",
                "programme_timepoint",
            )
        }
    print("  rows: " + ", ".join(f"{t} {c:,}" for t, c in counts.items()), flush=True)
    return chcs


# --- 1. worklists --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_worklist(engine: Engine, chcs: list[uuid.UUID], queries: int) -> dict[str, float]:
    rng = random.Random(11)
    sample = [rng.choice(chcs) for _ in range(queries)]
    everything = frozenset(chcs)
    as_of = utcnow()
    results: dict[str, list[float]] = {"clinician": [], "hub user": [], "bare query": []}
    bare = text("""
        SELECT id FROM programme_enrolment
        WHERE facility_id = :f AND status = 'active' AND next_due_at < :now AND next_due_at >= :cut
        ORDER BY critical DESC, risk_score DESC NULLS LAST, next_due_at LIMIT 50""")
    hub = Principal(None, "bench-hub", frozenset({"clinician"}), everything, everything)

    def call(label: str, principal: Principal, facility: uuid.UUID, s: Session) -> None:
        started = time.perf_counter()
        worklist.overdue(s, principal, as_of=as_of, facility_id=facility, limit=50)
        results[label].append((time.perf_counter() - started) * 1000)

    with Session(engine) as s:
        for facility in sample:
            doc = Principal(
                None, "bench-doc", frozenset({"clinician"}), frozenset({facility}), frozenset({facility})
            )
            call("clinician", doc, facility, s)
            call("hub user", hub, facility, s)
            started = time.perf_counter()
            s.execute(bare, {"f": facility, "now": as_of, "cut": as_of - timedelta(days=365)}).all()
            results["bare query"].append((time.perf_counter() - started) * 1000)
        s.rollback()  # the audit rows of the benchmark
    out = {}
    for label, values in results.items():
        out[label] = percentile(values, 95)
        print(
            f"  worklist {label:<12} p50 {statistics.median(values):7.1f} ms   p95 {out[label]:7.1f} ms"
            f"   ({len(values)} queries)",
            flush=True,
        )
    return out


# --- 2. KPIs -------------------------------------------------------------------------------------


def bench_kpi(engine: Engine) -> tuple[float, float, int]:
    month = utcnow().date().replace(day=1)
    written = 0

    def refresh() -> None:
        nonlocal written
        with Session(engine) as s:
            written = kpi.refresh(s, month)
            s.commit()

    def bare_scan() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*), avg(sbp) FROM programme_event")).all()
            conn.execute(text("SELECT count(*), avg(risk_score) FROM programme_enrolment")).all()

    took = timed(f"KPI refresh for {month:%Y-%m} (all families, 3 levels)", refresh)
    scan = timed("baseline: one bare scan of events and enrolments", bare_scan)
    print(f"  {written:,} KPI values written", flush=True)
    return took, scan, written


# --- 3. engine throughput ------------------------------------------------------------------------


def bench_engine(engine: Engine, patients: int, visits: int) -> dict[str, float]:
    definition = load_definitions()["hypertension"]
    start = datetime(2025, 1, 6, 9, tzinfo=UTC)
    template = run(
        definition, seed_event("t", start, {"source": "screening", "ascvd_category": "intermediate"}), []
    )
    with engine.begin() as conn:
        conn.execute(
            text("""
    WITH p AS (
      INSERT INTO patient (id, family_name, given_name, name, sex, birth_date, province_code, city_code,
                           district_code, home_facility_id, consent, active, deceased, version, created_at,
                           updated_at)
      SELECT gen_random_uuid(), 'E', i::text, 'E' || i, 'M', date '1960-01-01', '370000', '379900', '379902',
             (SELECT id FROM organisation WHERE tier = 'primary' ORDER BY code LIMIT 1), '{}', true, false, 1,
             now(), now()
      FROM generate_series(1, :k) i RETURNING id, home_facility_id)
    INSERT INTO programme_enrolment (id, patient_id, programme, definition_version, status, state, stage,
        step,
      source, facility_id, enrolled_at, enrolled_by, seed, data, next_due_at, critical, updated_at)
    SELECT gen_random_uuid(), id, 'diabetes', 1, 'active', 'new', 'screening', 0, 'screening',
         home_facility_id, :start, 'bench', '{}', '{}', NULL, false, now() FROM p"""),
            {"k": patients, "start": start},
        )
        conn.execute(
            text("""
    UPDATE programme_enrolment SET programme = 'hypertension', state = :state, stage = 'screening',
         seed = CAST(:seed AS jsonb), data = CAST(:data AS jsonb)
    WHERE enrolled_by = 'bench' AND programme = 'diabetes' AND enrolled_at = :start"""),
            {
                "state": template.state.name,
                "seed": '{"source": "screening", "ascvd_category": "intermediate"}',
                "data": json.dumps(template.state.to_json()),
                "start": start,
            },
        )
        ids = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT patient_id FROM programme_enrolment"
                    " WHERE enrolled_by = 'bench' AND enrolled_at = :start"
                ),
                {"start": start},
            )
        ]
    rng = random.Random(3)
    events = [
        service.NewEvent(
            f"bench-{pid.hex[:12]}-{j}",
            pid,
            "visit",
            start + timedelta(days=20 + 30 * j),
            {"sbp": float(rng.randint(118, 170)), "dbp": float(rng.randint(70, 100))},
        )
        for pid in ids
        for j in range(visits)
    ]
    n = len(events)
    print(f"  {n:,} visit events for {len(ids):,} enrolments ({visits} each, in time order)", flush=True)

    # Pure engine: advance each enrolment over its events in memory.
    def pure() -> None:
        by_patient: dict[uuid.UUID, list[Event]] = {}
        payloads = [dict(e.payload) for e in events]
        derive(["visit"] * n, payloads)
        for e, p in zip(events, payloads, strict=True):
            by_patient.setdefault(e.patient_id, []).append(Event(e.id, e.kind, e.effective_at, p))
        state = State.from_json(template.state.to_json())
        for evs in by_patient.values():
            advance(definition, state, evs)

    t_pure = timed("pure engine (derive + advance, in memory)", pure)

    def through_service() -> None:
        with Session(engine) as s:
            for part in range(0, n, 20_000):
                service.ingest_events(s, events[part : part + 20_000], "bench")
            stats = service.process_pending(s, batch=1000)
            s.commit()
        assert stats.events == n, stats

    t_service = timed("engine: ingest_events + process_pending (database)", through_service)
    rows = service.event_rows(events, "bench")  # the same rows, prepared outside the timing
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_event_copy (LIKE programme_event INCLUDING ALL)"))
        twin = Table("bench_event_copy", MetaData(), autoload_with=conn)
    columns = list(rows[0])

    def copy() -> None:
        with engine.begin() as conn:
            copy_rows(conn, twin, columns, ([r[c] for c in columns] for r in rows))

    t_copy = timed("baseline: COPY of the same event rows (indexed twin table)", copy)
    with engine.connect() as conn:
        states: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT state, count(*) FROM programme_enrolment"
                    " WHERE enrolled_by = 'bench' AND enrolled_at = :start "
                    "GROUP BY state"
                ),
                {"start": start},
            ).all()
        )
    print(f"  final states: {states}", flush=True)
    return {"events": n, "pure": n / t_pure, "service": n / t_service, "copy": n / t_copy}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=100_000, help="enrolled patients in the data set")
    parser.add_argument("--queries", type=int, default=200, help="worklist queries timed per kind")
    parser.add_argument(
        "--engine-patients", type=int, default=10_000, help="fresh enrolments for the engine run"
    )
    parser.add_argument("--engine-visits", type=int, default=10, help="visits per fresh enrolment")
    args = parser.parse_args()
    admin_url = os.environ.get("MEDLOOP_TEST_PG_URL")
    if not admin_url:
        sys.exit("set MEDLOOP_TEST_PG_URL to a PostgreSQL admin URL")
    os.environ.setdefault("MEDLOOP_LOG_LEVEL", "WARNING")
    with scratch_database(admin_url) as engine:
        chcs = generate(engine, args.patients)
        print("1. worklists", flush=True)
        wl = bench_worklist(engine, chcs, args.queries)
        print("2. monthly KPI refresh", flush=True)
        kpi_s, scan_s, _ = bench_kpi(engine)
        print("3. engine throughput", flush=True)
        eng = bench_engine(engine, args.engine_patients, args.engine_visits)
    print()
    print(f"figures at {args.patients:,} enrolled patients ({len(chcs):,} community centres):")
    for who in ("clinician", "hub user"):
        ratio = wl[who] / wl["bare query"]
        print(f"  worklist p95, {who:<10} {wl[who]:7.1f} ms  (target < 100 ms; {ratio:.1f}x the bare query)")
    print(
        f"  KPI refresh               {kpi_s:7.1f} s   (target < 60 s; {kpi_s / scan_s:.1f}x one bare scan)"
    )
    share = eng["service"] / eng["copy"]
    print(
        f"  engine                    {eng['service']:9,.0f} events/s"
        f" ({share:.1%} of COPY at {eng['copy']:,.0f}/s;"
        f" pure engine {eng['pure']:,.0f}/s)"
    )


if __name__ == "__main__":
    main()
