"""A patient's timeline: BP and glucose series with targets and alert markers, risk assessments,
device alerts, the devices bound, and the programme course (stage history, tasks, referrals, MDT
decisions, from `web.care`). The patient is fetched through the people
service (facility scope, audited read) and the rest of the read is audited with it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.clinical.codes import DIASTOLIC_BP as DIASTOLIC
from medloop.clinical.codes import GLUCOSE_MOLAR as GLUCOSE
from medloop.clinical.codes import SYSTOLIC_BP as SYSTOLIC
from medloop.devices.alerts import load_rules
from medloop.devices.models import Device, DeviceAlert, DeviceBinding, Reading
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.people.service import age_on, get_patient
from medloop.programs.definitions import load_definitions
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow

WINDOW_DAYS = 180
MAX_POINTS = 3000
CONTROL_PROGRAMME = "hypertension"  # its control target is the BP chart's target line


@cache
def targets() -> dict[str, Any]:
    with (Path(__file__).parent / "data" / "targets.yaml").open(encoding="utf-8") as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return doc


@dataclass
class Timeline:
    patient: Patient
    age: int
    home_facility: str
    bp: dict[str, list[Any]]
    glucose: dict[str, list[Any]]
    alerts: list[DeviceAlert]
    assessments: list[RiskAssessment]
    devices: list[tuple[Device, DeviceBinding]]
    chart_lines: dict[str, Any]


def _series(rows: list[tuple[datetime, float]]) -> tuple[list[str], list[float]]:
    return [r[0].isoformat() for r in rows], [round(float(r[1]), 2) for r in rows]


def chart_lines() -> dict[str, Any]:
    """Targets (from the reference data) and alert thresholds (from the device alert rules)."""
    t = targets()
    control = load_definitions()[CONTROL_PROGRAMME].param("control_target")
    critical = {r.code: r.threshold for r in load_rules() if r.severity == "critical" and r.op in (">=", ">")}
    low = {r.code: r.threshold for r in load_rules() if r.op in ("<", "<=") and r.severity == "high"}
    return {
        "bp_control": [control["sbp_below"], control["dbp_below"]],
        "bp_critical": [critical.get(SYSTOLIC), critical.get(DIASTOLIC)],
        "glucose_target": [t["fasting_glucose_target"]["low"], t["fasting_glucose_target"]["high"]],
        "glucose_low": low.get(GLUCOSE),
        "glucose_high": critical.get(GLUCOSE),
    }


def build_timeline(
    session: Session, principal: Principal, patient_id: uuid.UUID, *, now: datetime | None = None
) -> Timeline:
    now = now or utcnow()
    patient = get_patient(session, principal, patient_id)  # scope check + audited read
    since = now - timedelta(days=WINDOW_DAYS)
    sbp, dbp = Reading.__table__.alias("s"), Reading.__table__.alias("d")
    bp_rows = session.execute(
        select(sbp.c.effective_at, sbp.c.value, dbp.c.value)
        .join(dbp, and_(dbp.c.panel_id == sbp.c.panel_id, dbp.c.code == DIASTOLIC))
        .where(sbp.c.patient_id == patient_id, sbp.c.code == SYSTOLIC, sbp.c.effective_at >= since)
        .order_by(sbp.c.effective_at.desc())
        .limit(MAX_POINTS)
    ).all()[::-1]
    glucose_rows = session.execute(
        select(Reading.effective_at, Reading.value)
        .where(Reading.patient_id == patient_id, Reading.code == GLUCOSE, Reading.effective_at >= since)
        .order_by(Reading.effective_at.desc())
        .limit(MAX_POINTS)
    ).all()[::-1]
    alert_rows = session.execute(
        select(DeviceAlert, Reading.effective_at)
        .join(Reading, Reading.id == DeviceAlert.reading_id)
        .where(DeviceAlert.patient_id == patient_id)
        .order_by(DeviceAlert.created_at.desc())
        .limit(200)
    ).all()
    alerts = [a for a, _ in alert_rows]
    assessments = list(
        session.scalars(
            select(RiskAssessment)
            .where(RiskAssessment.patient_id == patient_id)
            .order_by(RiskAssessment.assessed_at.desc(), RiskAssessment.model)
            .limit(200)
        ).all()
    )
    bindings = session.execute(
        select(Device, DeviceBinding)
        .join(DeviceBinding, DeviceBinding.device_id == Device.id)
        .where(DeviceBinding.patient_id == patient_id)
        .order_by(DeviceBinding.start_at.desc())
    ).all()
    bp_times = [r[0].isoformat() for r in bp_rows]
    alert_points = [
        {"at": at.isoformat(), "code": a.code, "value": a.value, "severity": a.severity}
        for a, at in alert_rows
        if at >= since
    ]
    glucose_x, glucose_y = _series([(r[0], r[1]) for r in glucose_rows])
    record_access(
        session,
        principal,
        "read",
        "Observation",
        [patient_id],
        detail={
            "view": "timeline",
            "bp": len(bp_rows),
            "glucose": len(glucose_rows),
            "alerts": len(alerts),
            "assessments": len(assessments),
        },
    )
    home = patient.home_facility_id
    org = session.get(Organisation, home)
    return Timeline(
        patient=patient,
        age=age_on(patient.birth_date, date.today()),
        home_facility=f"{org.name} ({org.code})" if org else str(home),
        bp={
            "at": bp_times,
            "systolic": [round(float(r[1])) for r in bp_rows],
            "diastolic": [round(float(r[2])) for r in bp_rows],
        },
        glucose={"at": glucose_x, "value": glucose_y},
        alerts=alerts,
        assessments=assessments,
        devices=[(d, b) for d, b in bindings],
        chart_lines={**chart_lines(), "alerts": alert_points},
    )
