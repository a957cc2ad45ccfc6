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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, MetaData, Table, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dataset import generate, timed
from bench.scratch import scratch_database

from medloop.auth.principal import Principal
from medloop.programs import kpi, service, worklist
from medloop.programs.definitions import load_definitions
from medloop.programs.derive import derive
from medloop.programs.engine import Event, State, advance, run, seed_event
from medloop.store.base import utcnow
from medloop.store.bulk import copy_rows

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
        worklist.overdue(s, principal, as_of=as_of, only=worklist.WorklistFilter(facility), limit=50)
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
