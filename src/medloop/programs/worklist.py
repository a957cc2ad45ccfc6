"""Worklists: who is overdue for follow-up, most urgent first.

A patient is overdue when the earliest open follow-up task of an active enrolment (a visit or a
test: `Enrolment.next_due_at`, kept by the engine) is past. The order is critical readings first
(an open urgent task), then the highest ASCVD risk (China-PAR, %), then the most days overdue.
Patients overdue for more than 12 months (reporting.yaml) are on the separate lost-to-follow-up
list instead. One query over the enrolment table, indexed by (facility, status, next due)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.errors import NotFound
from medloop.people.models import Patient
from medloop.programs.definitions import Duration, parse_duration
from medloop.programs.models import Enrolment
from medloop.store.expressions import among


@cache
def reporting() -> dict[str, Any]:
    """The shared reporting rules (programs/reporting.yaml)."""
    text = resources.files("medloop.programs").joinpath("reporting.yaml").read_text("utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def lost_after() -> Duration:
    return parse_duration(reporting()["lost_to_follow_up_after"]["value"])


def lost_cutoff(as_of: datetime) -> datetime:
    """Due before this → lost to follow-up (due more than 12 months before `as_of`)."""
    return lost_after().before(as_of)


@dataclass(frozen=True)
class WorklistItem:
    """One row of an overdue or lost-to-follow-up worklist."""

    enrolment_id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    phone: str | None
    sex: str
    age: int
    programme: str
    state: str
    stage: str
    facility_id: uuid.UUID
    practitioner_id: uuid.UUID | None
    next_due_at: datetime
    days_overdue: int
    critical: bool
    risk_score: float | None
    last_visit_at: datetime | None


@dataclass(frozen=True)
class WorklistFilter:
    """Which rows of a worklist to show (all of them by default, within the viewer's scope)."""

    facility_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    programme: str | None = None
    critical_only: bool = False
    min_risk: float | None = None


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


# What a worklist row shows of the enrolment (not its stored engine state).
COLUMNS = (
    Enrolment.id,
    Enrolment.patient_id,
    Enrolment.programme,
    Enrolment.state,
    Enrolment.stage,
    Enrolment.facility_id,
    Enrolment.practitioner_id,
    Enrolment.next_due_at,
    Enrolment.critical,
    Enrolment.risk_score,
    Enrolment.last_visit_at,
)


def _query(principal: Principal, *, as_of: datetime, lost: bool, only: WorklistFilter) -> Select:
    cutoff = lost_cutoff(as_of)
    stmt: Select = (
        select(*COLUMNS, Patient.name, Patient.phone, Patient.sex, Patient.birth_date)
        .join(Patient, Patient.id == Enrolment.patient_id)
        .where(Enrolment.status == "active", patient_in_scope(principal, Enrolment.patient_id))
    )
    if lost:
        stmt = stmt.where(Enrolment.next_due_at < cutoff)
    else:
        stmt = stmt.where(Enrolment.next_due_at < as_of, Enrolment.next_due_at >= cutoff)
    if only.facility_id is not None:
        stmt = stmt.where(Enrolment.facility_id == only.facility_id)
    elif principal.scope is not None:
        stmt = stmt.where(among(Enrolment.facility_id, principal.scope))
    if only.practitioner_id is not None:
        stmt = stmt.where(Enrolment.practitioner_id == only.practitioner_id)
    if only.programme is not None:
        stmt = stmt.where(Enrolment.programme == only.programme)
    if only.critical_only:
        stmt = stmt.where(Enrolment.critical.is_(True))
    if only.min_risk is not None:
        stmt = stmt.where(Enrolment.risk_score >= only.min_risk)
    return stmt


def overdue(
    session: Session,
    principal: Principal,
    *,
    as_of: datetime,
    lost: bool = False,
    only: WorklistFilter = WorklistFilter(),
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[WorklistItem], int]:
    """One page of the overdue list (or, with `lost`, the lost-to-follow-up list)."""
    if only.facility_id is not None and not principal.can_see_facility(only.facility_id):
        raise NotFound(f"facility {only.facility_id} not found in your facility scope")
    stmt = _query(principal, as_of=as_of, lost=lost, only=only)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = (
        Enrolment.critical.desc(),
        Enrolment.risk_score.desc().nulls_last(),
        Enrolment.next_due_at.asc(),
        Enrolment.id,
    )
    rows = session.execute(stmt.order_by(*order).limit(limit).offset(offset)).all()
    today = as_of.date()
    items = [
        WorklistItem(
            enrolment_id=r.id,
            patient_id=r.patient_id,
            patient_name=r.name,
            phone=r.phone,
            sex=r.sex,
            age=_age(r.birth_date, today),
            programme=r.programme,
            state=r.state,
            stage=r.stage,
            facility_id=r.facility_id,
            practitioner_id=r.practitioner_id,
            next_due_at=r.next_due_at,
            days_overdue=(as_of - r.next_due_at).days,
            critical=r.critical,
            risk_score=r.risk_score,
            last_visit_at=r.last_visit_at,
        )
        for r in rows
    ]
    record_access(
        session,
        principal,
        "search",
        "Worklist",
        [i.patient_id for i in items],
        detail={"list": "lost_to_follow_up" if lost else "overdue", "total": total},
    )
    return items, total
