"""The service over a real database (SQLite and PostgreSQL): enrolment from screening results and
device alerts, events for unknown patients, re-delivery, late events, time passing, one active
enrolment per programme."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.auth.principal import system_principal
from medloop.devices.models import Device, DeviceAlert, Reading
from medloop.errors import Conflict
from medloop.programs import feeds, service
from medloop.programs.models import Enrolment, ProgrammeEvent, ProgrammeTask
from medloop.screening.models import RiskAssessment
from tests.factories import World, add_patient
from tests.programs.conftest import T0, at

SYSTEM = system_principal()


def _assess(s: Session, patient_id: uuid.UUID, model: str, category: str, score: float | None = None) -> None:
    s.add(
        RiskAssessment(
            patient_id=patient_id,
            model=model,
            model_version="t",
            score=score,
            category=category,
            assessed_at=T0,
        )
    )
    s.flush()


def _enrolments(s: Session, patient_id: uuid.UUID) -> dict[str, Enrolment]:
    rows = s.scalars(
        select(Enrolment).where(Enrolment.patient_id == patient_id).execution_options(populate_existing=True)
    )
    return {e.programme: e for e in rows if e.status == "active"}


def _open(s: Session, enrolment: Enrolment) -> set[str]:
    return {t.key for t in service.enrolment_tasks(s, enrolment.id) if t.status == "open"}


def test_screening_results_enrol_and_risk_orders(session: Session, world: World) -> None:
    alice, bob = world.patients["alice"].id, world.patients["bob"].id
    _assess(session, alice, "blood_pressure", "grade_1")
    _assess(session, alice, "china_par", "high", 12.3)
    _assess(session, alice, "cdrs", "high", 28)
    _assess(session, bob, "blood_pressure", "normal")
    _assess(session, bob, "lung_screening", "eligible")
    assert feeds.sync_screening(session) == 5
    stats = service.process_pending(session)
    assert (stats.events, stats.enrolled) == (5, 3)
    alice_in = _enrolments(session, alice)
    assert set(alice_in) == {"hypertension", "diabetes"}
    htn = alice_in["hypertension"]
    assert (htn.state, htn.stage, htn.source, htn.risk_score) == ("screened", "screening", "screening", 12.3)
    assert htn.facility_id == world.org_id("CHC-A1") and htn.enrolled_at == T0
    assert set(_enrolments(session, bob)) == {"lung_cancer"}
    # Syncing again stores nothing and enrols nobody twice.
    assert feeds.sync_screening(session, since=T0 - timedelta(days=1)) == 0
    assert service.process_pending(session).enrolled == 0
    count = session.scalar(select(func.count()).select_from(Enrolment))
    assert count == 3


def _alert(s: Session, patient_id: uuid.UUID, when: datetime, value: float = 186.0) -> None:
    device = Device(serial=f"BP-{uuid.uuid4().hex[:8]}", kind="bp_monitor")
    s.add(device)
    s.flush()
    reading = Reading(
        id=uuid.uuid4(),
        patient_id=patient_id,
        device_id=device.id,
        code="8480-6",
        value=value,
        unit="mm[Hg]",
        effective_at=when,
        channel="http",
    )
    s.add(reading)
    s.flush()
    s.add(
        DeviceAlert(
            id=uuid.uuid4(),
            patient_id=patient_id,
            reading_id=reading.id,
            rule_id="bp-critical-systolic",
            code="8480-6",
            value=value,
            unit="mm[Hg]",
            severity="critical",
        )
    )
    s.flush()


def test_device_alert_becomes_an_urgent_task_and_enrols(session: Session, world: World) -> None:
    carol = world.patients["carol"].id
    _alert(session, carol, at(3))
    assert feeds.sync_device_alerts(session) == 1
    service.process_pending(session)
    htn = _enrolments(session, carol)["hypertension"]
    assert htn.source == "device_alert" and htn.critical
    tasks = {t.key: t for t in service.enrolment_tasks(session, htn.id)}
    assert tasks["device_alert"].priority == "urgent" and tasks["device_alert"].status == "open"
    assert tasks["device_alert"].facility_id == world.org_id("CHC-B1")  # the patient's care team
    # A second alert while the first is open: still one urgent task, no second enrolment.
    _alert(session, carol, at(4))
    feeds.sync_device_alerts(session)
    service.process_pending(session)
    assert (
        session.scalar(select(func.count()).select_from(Enrolment).where(Enrolment.patient_id == carol)) == 1
    )
    assert [t.key for t in service.enrolment_tasks(session, htn.id)].count("device_alert") == 1


def test_home_bp_readings_reach_enrolled_patients(session: Session, world: World) -> None:
    alice = world.patients["alice"].id
    service.enrol(session, SYSTEM, alice, "hypertension", at=T0, diagnosed=True)
    device = Device(serial="BP-HOME-1", kind="bp_monitor")
    session.add(device)
    session.flush()
    panel = uuid.uuid4()
    for code, value in (("8480-6", 142.0), ("8462-4", 88.0)):
        session.add(
            Reading(
                id=uuid.uuid4(),
                patient_id=alice,
                device_id=device.id,
                code=code,
                value=value,
                unit="mm[Hg]",
                effective_at=at(10),
                channel="mqtt",
                panel_id=panel,
            )
        )
    session.flush()
    assert feeds.sync_home_bp(session) == 1
    service.process_pending(session)
    stored = session.scalars(select(ProgrammeEvent).where(ProgrammeEvent.kind == "home_bp")).one()
    assert (stored.sbp, stored.dbp, stored.status) == (142.0, 88.0, "processed")


def test_unknown_patient_events_are_kept_then_applied(session: Session, world: World) -> None:
    stranger = uuid.uuid4()
    event = service.NewEvent(
        "ra-x", stranger, "screening_result", T0, {"model": "copd_sq", "category": "high"}
    )
    assert service.ingest_events(session, [event]) == ["ra-x"]
    stats = service.process_pending(session)
    assert stats.unknown_patient == 1 and stats.events == 0
    assert session.get(ProgrammeEvent, "ra-x").status == "unknown_patient"  # type: ignore[union-attr]
    patient = add_patient(session, world, "zed", "CHC-A2")
    session.execute(
        ProgrammeEvent.__table__.update().where(ProgrammeEvent.id == "ra-x").values(patient_id=patient.id)
    )
    assert service.retry_unknown_patients(session) == 1
    assert service.process_pending(session).enrolled == 1
    assert _enrolments(session, patient.id)["copd"].state == "spirometry_due"


def test_redelivery_is_a_no_op(session: Session, world: World) -> None:
    alice = world.patients["alice"].id
    enrolment = service.enrol(session, SYSTEM, alice, "hypertension", at=T0, data={"ascvd_category": "high"})
    visit = service.NewEvent("visit-1", alice, "visit", at(20), {"sbp": 152, "dbp": 94})
    assert service.record_events(session, SYSTEM, [visit]) == ["visit-1"]
    session.refresh(enrolment)
    before = (enrolment.data, enrolment.updated_at)
    assert service.record_events(session, SYSTEM, [visit, visit]) == []
    session.refresh(enrolment)
    assert (enrolment.data, enrolment.updated_at) == before
    assert enrolment.state == "titrating" and enrolment.step == 1


def test_one_active_enrolment_per_programme(session: Session, world: World) -> None:
    alice = world.patients["alice"].id
    service.enrol(session, SYSTEM, alice, "copd", at=T0)
    with pytest.raises(Conflict):
        service.enrol(session, SYSTEM, alice, "copd", at=at(1))
    service.record_events(
        session, SYSTEM, [service.NewEvent("c1", alice, "call_outcome", at(2), {"outcome": "moved_away"})]
    )
    assert _enrolments(session, alice) == {}
    again = service.enrol(session, SYSTEM, alice, "copd", at=at(30))  # after the end: a new course
    assert again.status == "active"


def test_late_event_replays_the_enrolment(session: Session, world: World) -> None:
    alice = world.patients["alice"].id
    enrolment = service.enrol(
        session, SYSTEM, alice, "hypertension", at=T0, data={"ascvd_category": "intermediate"}
    )
    service.record_events(
        session, SYSTEM, [service.NewEvent("v2", alice, "visit", at(50), {"sbp": 132, "dbp": 84})]
    )
    session.refresh(enrolment)
    assert enrolment.state == "not_hypertensive" and enrolment.status == "ended"
    # The first visit arrives late: the course is replayed in effective-time order.
    stats = service.record_events(
        session, SYSTEM, [service.NewEvent("v1", alice, "visit", at(20), {"sbp": 152, "dbp": 94})]
    )
    assert stats == ["v1"]
    session.refresh(enrolment)
    assert (enrolment.state, enrolment.status, enrolment.step) == ("controlled", "active", 1)
    statuses = {
        t.ref: t.status
        for t in session.scalars(select(ProgrammeTask).where(ProgrammeTask.enrolment_id == enrolment.id))
    }
    assert statuses["follow_up_visit#1"] == "done" and statuses["follow_up_visit#3"] == "open"


def test_alert_enrolment_made_while_the_course_looked_ended_is_merged_back(
    session: Session, world: World
) -> None:
    bob = world.patients["bob"].id
    first = service.enrol(
        session, SYSTEM, bob, "hypertension", at=T0, data={"ascvd_category": "intermediate"}
    )
    service.record_events(
        session, SYSTEM, [service.NewEvent("v3", bob, "visit", at(130), {"sbp": 128, "dbp": 80})]
    )
    _alert(session, bob, at(140))
    feeds.sync_device_alerts(session)
    service.process_pending(session)
    second = _enrolments(session, bob)["hypertension"]
    assert second.id != first.id and second.source == "device_alert"
    service.record_events(
        session, SYSTEM, [service.NewEvent("v1", bob, "visit", at(20), {"sbp": 152, "dbp": 94})]
    )
    session.refresh(first)
    session.refresh(second)
    assert first.status == "active" and "device_alert" in _open(session, first)
    assert (second.status, second.end_reason, second.ended_at) == ("ended", "merged", at(140))
    assert all(
        t.status == "void"
        for t in session.scalars(select(ProgrammeTask).where(ProgrammeTask.enrolment_id == second.id))
    )


def test_time_passing_fires_timers_once(session: Session, world: World) -> None:
    alice = world.patients["alice"].id
    enrolment = service.enrol(session, SYSTEM, alice, "hypertension", at=T0, data={"ascvd_category": "low"})
    service.record_events(
        session, SYSTEM, [service.NewEvent("v1", alice, "visit", at(20), {"sbp": 150, "dbp": 92})]
    )
    session.refresh(enrolment)
    assert enrolment.state == "lifestyle" and enrolment.next_timer_at == at(20 + 84)
    assert service.advance_time(session, at(100)) == 0
    assert service.advance_time(session, at(120)) == 1
    session.refresh(enrolment)
    assert (enrolment.state, enrolment.step, enrolment.next_timer_at) == ("titrating", 1, None)
    assert service.advance_time(session, at(120)) == 0


def test_processing_is_audited_without_patient_data_in_the_log(
    session: Session, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    alice = world.patients["alice"].id
    service.enrol(session, SYSTEM, alice, "diabetes", at=T0)
    service.record_events(
        session, SYSTEM, [service.NewEvent("t1", alice, "test_result", at(3), {"fpg_mmol": 8.1})]
    )
    actions = session.execute(
        select(AuditEvent.action, AuditEvent.resource_type).where(AuditEvent.patient_id == alice)
    ).all()
    assert {
        ("create", "ProgrammeEnrolment"),
        ("create", "ProgrammeEvent"),
        ("update", "ProgrammeEnrolment"),
    } <= set(actions)
    assert "8.1" not in caplog.text and world.patients["alice"].name not in caplog.text


def test_engine_never_crashes_on_odd_payloads(session: Session, world: World) -> None:
    alice = world.patients["alice"].id
    service.enrol(session, SYSTEM, alice, "lung_cancer", at=T0)
    odd = [
        service.NewEvent("o1", alice, "test_result", at(1), {"test": "ldct", "nodule_type": "cubic"}),
        service.NewEvent("o2", alice, "mdt_recommendation", at(2), {"recommendation": None}),
        service.NewEvent(
            "o3", alice, "call_outcome", at(3), {"outcome": "reached_rescheduled", "rescheduled_to": "soon"}
        ),
        service.NewEvent("o4", alice, "task_completed", at(4), {}),
    ]
    assert len(service.record_events(session, SYSTEM, odd)) == 4
    assert _enrolments(session, alice)["lung_cancer"].state == "education"


def test_times_are_stored_as_utc(engine: Engine, world: World) -> None:
    with Session(engine) as s:
        service.enrol(s, SYSTEM, world.patients["dan"].id, "copd", at=datetime(2026, 3, 1, 8, tzinfo=UTC))
        s.commit()
    with Session(engine) as s:
        enrolment = s.scalars(select(Enrolment)).one()
        assert enrolment.enrolled_at == datetime(2026, 3, 1, 8, tzinfo=UTC)
        assert enrolment.next_due_at is not None and enrolment.next_due_at.tzinfo is not None
