"""Events from the other domains: stored screening results, device alerts and home BP readings.

Each source row becomes an event whose id is derived from the row's id, so syncing the same rows
again stores nothing. A sync reads rows newer than the newest event it made before (less an
overlap, for rows that committed late); `since` forces an earlier start (a backfill)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from medloop.devices.models import DeviceAlert, Reading
from medloop.programs.definitions import load_definitions
from medloop.programs.models import Enrolment, ProgrammeEvent
from medloop.programs.service import NewEvent, ingest_events
from medloop.screening.models import RiskAssessment

OVERLAP = timedelta(hours=1)
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"
BATCH = 5000


def _watermark(session: Session, kind: str, since: datetime | None) -> datetime | None:
    if since is not None:
        return since
    newest = session.scalar(select(func.max(ProgrammeEvent.recorded_at)).where(ProgrammeEvent.kind == kind))
    return newest - OVERLAP if newest is not None else None


def _pages(session: Session, stmt: Select, key: Any) -> Iterator[Sequence[Any]]:
    """Keyset pages of a query ordered by `key` (a unique column)."""
    last = None
    while True:
        page_stmt = stmt if last is None else stmt.where(key > last)
        rows = session.execute(page_stmt.order_by(key).limit(BATCH)).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def sync_screening(session: Session, since: datetime | None = None) -> int:
    """Risk assessments of the models programmes enrol on (and China-PAR, which orders worklists)."""
    models = {m for d in load_definitions().values() for m, _ in d.screening_rules()} | {"china_par"}
    start = _watermark(session, "screening_result", since)
    stmt = select(
        RiskAssessment.id,
        RiskAssessment.patient_id,
        RiskAssessment.model,
        RiskAssessment.model_version,
        RiskAssessment.category,
        RiskAssessment.score,
        RiskAssessment.flags,
        RiskAssessment.assessed_at,
    ).where(RiskAssessment.model.in_(models))
    if start is not None:
        stmt = stmt.where(RiskAssessment.assessed_at >= start)
    stored = 0
    for rows in _pages(session, stmt, RiskAssessment.id):
        events = [
            NewEvent(
                f"ra:{r.id}",
                r.patient_id,
                "screening_result",
                r.assessed_at,
                {
                    "model": r.model,
                    "model_version": r.model_version,
                    "category": r.category,
                    "score": r.score,
                    "flags": list(r.flags or []),
                },
                source="screening",
            )
            for r in rows
        ]
        stored += len(ingest_events(session, events))
    return stored


def sync_device_alerts(session: Session, since: datetime | None = None) -> int:
    start = _watermark(session, "device_alert", since)
    stmt = select(
        DeviceAlert.id,
        DeviceAlert.patient_id,
        DeviceAlert.rule_id,
        DeviceAlert.code,
        DeviceAlert.value,
        DeviceAlert.unit,
        DeviceAlert.severity,
        Reading.effective_at,
    ).join(Reading, Reading.id == DeviceAlert.reading_id)
    if start is not None:
        stmt = stmt.where(DeviceAlert.created_at >= start)
    stored = 0
    for rows in _pages(session, stmt, DeviceAlert.id):
        events = [
            NewEvent(
                f"alert:{r.id}",
                r.patient_id,
                "device_alert",
                r.effective_at,
                {
                    "rule_id": r.rule_id,
                    "code": r.code,
                    "value": r.value,
                    "unit": r.unit,
                    "severity": r.severity,
                },
                source="device",
            )
            for r in rows
        ]
        stored += len(ingest_events(session, events))
    return stored


def sync_home_bp(session: Session, since: datetime | None = None) -> int:
    """BP panels (systolic + diastolic sharing a panel id) of patients in a programme that reads
    home BP."""
    listening = [d.id for d in load_definitions().values() if "home_bp" in d.events]
    if not listening:
        return 0
    start = _watermark(session, "home_bp", since)
    dia = aliased(Reading)
    enrolled = select(Enrolment.patient_id).where(
        Enrolment.status == "active", Enrolment.programme.in_(listening)
    )
    stmt = (
        select(Reading.panel_id, Reading.patient_id, Reading.value, dia.value, Reading.effective_at)
        .join(dia, and_(dia.panel_id == Reading.panel_id, dia.code == DIASTOLIC))
        .where(Reading.code == SYSTOLIC, Reading.panel_id.is_not(None), Reading.patient_id.in_(enrolled))
    )
    if start is not None:
        stmt = stmt.where(Reading.received_at >= start)
    stored = 0
    for rows in _pages(session, stmt, Reading.panel_id):
        events = [
            NewEvent(f"bp:{panel}", patient, "home_bp", at, {"sbp": sbp, "dbp": dbp}, source="device")
            for panel, patient, sbp, dbp, at in rows
        ]
        stored += len(ingest_events(session, events))
    return stored
