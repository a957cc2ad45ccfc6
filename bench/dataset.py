"""The 1M-patient PostgreSQL data set of the benchmarks, built on the server with
INSERT … SELECT generate_series (minutes, not hours):

- `generate`: a region (hub, a county hospital per district, a community centre per 800 residents)
  of N patients, each enrolled in hypertension, with 12 months of clinic visits and home BP
  events, China-PAR results, referrals and Chest Pain Center cases (`bench/programs.py`);
- `add_dashboard_data`: what the dashboards read on top of it (`bench/web.py`): MRNs, devices bound
  to a share of patients with 12 months of their readings (BP panels, glucose) and a last hour of
  live ones, open and acknowledged device alerts, lung-cancer MDT cases, the demo logins, and
  12 months of pre-aggregated KPIs (`kpi.refresh`, the same code as `medloop kpi refresh`).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from medloop.demo import ensure_logins
from medloop.network.models import Organisation
from medloop.programs import kpi
from medloop.store.base import utcnow

RESIDENTS_PER_FACILITY = 800  # as the simulated region (sim/data/region.yaml)
DISTRICTS = 10


def timed(label: str, fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    took = time.perf_counter() - started
    print(f"  {label:<58} {took:8.1f} s", flush=True)
    return took


# --- the programmes' data set ------------------------------------------------------------------


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
        # The LATERAL parts refer to the outer row's unique patient id (and m), so that random() is
        # drawn per row: keyed on fewer columns, PostgreSQL's Memoize reuses one draw for many rows.
        "visits (about 6 a year each)": """
    INSERT INTO programme_event (id, patient_id, kind, effective_at, recorded_at, recorded_by, source,
                               facility_id, status, payload, sbp, dbp)
    SELECT gen_random_uuid()::text, e.patient_id, 'visit', t, t, 'bench', 'api', e.facility_id, 'processed',
         jsonb_build_object('sbp', sbp, 'dbp', dbp), sbp, dbp
    FROM programme_enrolment e, generate_series(1, 12) m,
       LATERAL (SELECT :now - (m * 30 - random() * 25) * interval '1 day'
                       + (e.patient_id IS NULL)::int * interval '1 s' AS t,
                       round(110 + random() * 60) AS sbp, round(65 + random() * 40) AS dbp) v
    WHERE random() < 0.5""",
        "home BP readings (a fifth of patients, monthly)": """
    INSERT INTO programme_event (id, patient_id, kind, effective_at, recorded_at, recorded_by, source,
                               status, payload, sbp, dbp)
    SELECT gen_random_uuid()::text, e.patient_id, 'home_bp', t, t, 'bench', 'device', 'processed',
         jsonb_build_object('sbp', sbp, 'dbp', dbp), sbp, dbp
    FROM (SELECT * FROM programme_enrolment WHERE random() < 0.2) e, generate_series(1, 12) m,
       LATERAL (SELECT :now - (m * 30 - random() * 25) * interval '1 day'
                       + (e.patient_id IS NULL)::int * interval '1 s' AS t,
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


# --- what the dashboards read on top of it -------------------------------------------------------

DASHBOARD_SQL = {
    "medical record numbers (one per patient, issued by the home facility)": """
    INSERT INTO patient_identifier (id, patient_id, system, value_key, display, organisation_id)
    SELECT gen_random_uuid(), id, 'mrn', home_facility_id::text || ':' || given_name, given_name,
         home_facility_id
    FROM patient""",
    "devices bound to 7 % of patients (BP monitors 5 %, glucometers 2 %)": """
    CREATE TEMP TABLE bench_dev AS
    SELECT gen_random_uuid() AS id, patient_id, kind, row_number() OVER () AS n
    FROM (SELECT id AS patient_id, random() AS r FROM patient) p
       CROSS JOIN LATERAL (SELECT CASE WHEN p.r < 0.05 THEN 'bp_monitor' ELSE 'glucometer' END AS kind) k
    WHERE p.r < 0.07;
    INSERT INTO device (id, serial, kind, model, active, created_at, updated_at)
    SELECT id, 'BENCH-' || n, kind, 'bench', true, :now - interval '400 days', :now FROM bench_dev;
    INSERT INTO device_binding (id, device_id, patient_id, start_at, end_at, bound_by)
    SELECT gen_random_uuid(), id, patient_id, :now - interval '400 days', NULL, 'bench' FROM bench_dev""",
    "BP panels, two a month for 12 months (systolic and diastolic rows sharing a panel)": """
    CREATE TEMP TABLE bench_panel AS
    SELECT d.id AS device_id, d.patient_id, v.t, gen_random_uuid() AS panel_id, v.sbp, v.dbp
    FROM bench_dev d, generate_series(0, 23) k,
       LATERAL (SELECT :now - (k * 15 + 0.01 + random() * 14) * interval '1 day' + d.n * interval '0 s' AS t,
                       round(110 + random() * 80) AS sbp, round(65 + random() * 50) AS dbp) v
    WHERE d.kind = 'bp_monitor';
    INSERT INTO reading (id, patient_id, device_id, code, value, unit, effective_at, received_at, panel_id,
                       channel)
    SELECT gen_random_uuid(), p.patient_id, p.device_id, c.code,
         CASE c.code WHEN '8480-6' THEN p.sbp ELSE p.dbp END, 'mm[Hg]', p.t, p.t, p.panel_id, 'http'
    FROM bench_panel p, (VALUES ('8480-6'), ('8462-4')) c(code)""",
    "glucose, two a month for 12 months": """
    INSERT INTO reading (id, patient_id, device_id, code, value, unit, effective_at, received_at, panel_id,
                       channel)
    SELECT gen_random_uuid(), d.patient_id, d.id, '14771-0', v.g, 'mmol/L', v.t, v.t, NULL, 'http'
    FROM bench_dev d, generate_series(0, 23) k,
       LATERAL (SELECT :now - (k * 15 + 0.01 + random() * 14) * interval '1 day' + d.n * interval '0 s' AS t,
                       round((3.5 + random() * 12)::numeric, 1) AS g) v
    WHERE d.kind = 'glucometer'""",
    "the last hour: a panel from 2 % of BP monitors": """
    INSERT INTO reading (id, patient_id, device_id, code, value, unit, effective_at, received_at, panel_id,
                       channel)
    SELECT gen_random_uuid(), p.patient_id, p.device_id, c.code, c.value, 'mm[Hg]', p.t, p.t, p.panel_id,
         'http'
    FROM (SELECT d.id AS device_id, d.patient_id, gen_random_uuid() AS panel_id,
                 :now - random() * interval '59 minutes' AS t
          FROM bench_dev d WHERE d.kind = 'bp_monitor' AND random() < 0.02) p,
       (VALUES ('8480-6', 132.0), ('8462-4', 84.0)) c(code, value)""",
    "device alerts: critical systolic panels (open in the last 30 days, else acknowledged)": """
    INSERT INTO device_alert (id, patient_id, reading_id, rule_id, code, value, unit, severity, status,
                            created_at, acknowledged_at, acknowledged_by)
    SELECT gen_random_uuid(), r.patient_id, r.id, 'bp-critical-systolic', r.code, r.value, r.unit,
         'critical', s.status, r.effective_at,
         CASE WHEN s.status = 'acknowledged' THEN r.effective_at + interval '1 hour' END,
         CASE WHEN s.status = 'acknowledged' THEN 'bench' END
    FROM reading r CROSS JOIN LATERAL (
      SELECT CASE WHEN r.effective_at >= :now - interval '30 days' AND random() < 0.5 + r.value * 0
                  THEN 'open' ELSE 'acknowledged' END AS status) s
    WHERE r.code = '8480-6' AND r.value >= 180""",
    "lung-cancer MDT cases (0.05 % of patients: open, scheduled, reviewed)": """
    WITH en AS (
      INSERT INTO programme_enrolment (id, patient_id, programme, definition_version, status, state, stage,
          step, source, facility_id, enrolled_at, enrolled_by, seed, data, critical, updated_at)
      SELECT gen_random_uuid(), patient_id, 'lung_cancer', 1, 'active', 'mdt_review', 'diagnosis', 0,
             'screening', facility_id, :now - random() * interval '90 days', 'bench', '{}', '{}', false, :now
      FROM programme_enrolment WHERE programme = 'hypertension' AND random() < 0.0005
      RETURNING id, patient_id, facility_id, enrolled_at),
    t AS (
      INSERT INTO programme_task (id, enrolment_id, patient_id, programme, ref, key, kind, title, priority,
          status, due_at, opened_at, facility_id, event_id, detail, updated_at)
      SELECT gen_random_uuid(), id, patient_id, 'lung_cancer', 'mdt_review#1', 'mdt_review', 'mdt',
             'MDT review', 'urgent', 'open', enrolled_at, enrolled_at, facility_id, 'bench', '{}', :now
      FROM en RETURNING id, enrolment_id, patient_id, opened_at)
    INSERT INTO mdt_case (id, task_id, enrolment_id, patient_id, programme, host_id, status, case_data,
        scheduled_at, recommendation, recommended_at, recommended_by, created_at)
    SELECT gen_random_uuid(), t.id, t.enrolment_id, t.patient_id, 'lung_cancer',
         (SELECT id FROM organisation WHERE tier = 'tertiary_hub' ORDER BY code LIMIT 1), s.status,
         '{"lung_rads_category": "4B", "nodule_mm": 16}',
         CASE WHEN s.status <> 'open' THEN t.opened_at + interval '7 days' END,
         CASE WHEN s.status = 'reviewed' THEN 'biopsy' END,
         CASE WHEN s.status = 'reviewed' THEN t.opened_at + interval '7 days' END,
         CASE WHEN s.status = 'reviewed' THEN 'bench' END, t.opened_at
    FROM t CROSS JOIN LATERAL (
      SELECT CASE WHEN r < 0.4 THEN 'open' WHEN r < 0.7 THEN 'scheduled' ELSE 'reviewed' END AS status
      FROM (SELECT random() + extract(epoch FROM t.opened_at) * 0 AS r) x) s""",
}


def add_dashboard_data(engine: Engine, kpi_months: int = 12) -> None:
    """On top of `generate`'s data set: see the module's docstring."""
    params = {"now": utcnow()}
    with engine.begin() as conn:
        for label, statements in DASHBOARD_SQL.items():

            def run(statements: str = statements) -> None:
                for statement in statements.split(";\n"):
                    conn.execute(text(statement), params)

            timed(label, run)
        timed("ANALYZE", lambda: conn.execute(text("ANALYZE")))
    with Session(engine) as session:
        timed("demo logins (admin, manager, doctor, …)", lambda: ensure_logins(session))
    today = utcnow().date()
    for back in range(kpi_months - 1, -1, -1):
        index = today.year * 12 + today.month - 1 - back
        period = date(index // 12, index % 12 + 1, 1)

        def refresh(period: date = period) -> None:
            with Session(engine) as session:
                kpi.refresh(session, period)
                session.commit()

        timed(f"KPI refresh {period:%Y-%m}", refresh)
    with engine.begin() as conn:
        timed("ANALYZE", lambda: conn.execute(text("ANALYZE")))
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("device", "reading", "device_alert", "mdt_case", "kpi_value")
        }
    print("  rows: " + ", ".join(f"{t} {c:,}" for t, c in counts.items()), flush=True)
