"""Programme tables: enrolments (with the engine's state), the events that drive them, the tasks
they emit, Chest Pain Center time points, referrals (FHIR ServiceRequest-shaped), MDT cases with
participants, and the pre-aggregated KPI values.

Events are stored per patient, not per enrolment: one visit feeds every programme the patient is
in. `patient_id` on an event is deliberately not a foreign key, so that an event for a patient the
system does not know yet is kept (status `unknown_patient`) instead of refused."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from medloop.store.base import Base, new_id, utcnow


class EnrolmentStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class EventStatus(StrEnum):
    PENDING = "pending"  # stored, not yet applied
    PROCESSED = "processed"  # applied to every enrolment it belongs to (possibly none)
    UNKNOWN_PATIENT = "unknown_patient"  # kept until the patient exists (`medloop programs process`)


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"
    VOID = "void"  # a replay no longer produces it (a late event changed the course)


class ReferralStatus(StrEnum):
    """Business status; `fhir_status` maps it to ServiceRequest.status."""

    REQUESTED = "requested"
    UNROUTED = "unrouted"  # no facility in the network has the capability
    ACCEPTED = "accepted"
    ARRIVED = "arrived"
    COMPLETED = "completed"
    DECLINED = "declined"
    REVOKED = "revoked"


class MdtStatus(StrEnum):
    OPEN = "open"
    SCHEDULED = "scheduled"
    REVIEWED = "reviewed"
    CANCELLED = "cancelled"


ACTIVE_ONLY = text("status = 'active'")
PENDING_ONLY = text("status = 'pending'")


class Enrolment(Base):
    __tablename__ = "programme_enrolment"
    __table_args__ = (
        # One active enrolment per patient per programme.
        Index(
            "uq_programme_enrolment_active",
            "patient_id",
            "programme",
            unique=True,
            sqlite_where=ACTIVE_ONLY,
            postgresql_where=ACTIVE_ONLY,
        ),
        Index("ix_programme_enrolment_worklist", "facility_id", "status", "next_due_at"),
        Index("ix_programme_enrolment_next_timer_at", "next_timer_at"),
        Index("ix_programme_enrolment_programme_status", "programme", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    definition_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(12), default=EnrolmentStatus.ACTIVE)
    state: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(20))
    step: Mapped[int] = mapped_column(default=0)
    source: Mapped[str] = mapped_column(String(20))  # screening | device_alert | clinician
    source_ref: Mapped[str | None] = mapped_column(String(64))
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))  # the care team
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioner.id"), index=True)
    enrolled_at: Mapped[datetime]
    enrolled_by: Mapped[str] = mapped_column(String(80))
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(40))
    seed: Mapped[dict[str, Any]]  # data of the enrolment's first event
    data: Mapped[dict[str, Any]]  # the engine state (medloop.programs.engine.State)
    # Derived from the state, for worklists and KPIs:
    next_due_at: Mapped[datetime | None]
    next_timer_at: Mapped[datetime | None]
    last_visit_at: Mapped[datetime | None]
    critical: Mapped[bool] = mapped_column(default=False)
    risk_score: Mapped[float | None] = mapped_column(Float)  # China-PAR 10-year risk, %
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProgrammeEvent(Base):
    __tablename__ = "programme_event"
    __table_args__ = (
        Index("ix_programme_event_patient_effective", "patient_id", "effective_at"),
        Index("ix_programme_event_kind_effective", "kind", "effective_at"),
        Index(
            "ix_programme_event_pending",
            "patient_id",
            sqlite_where=PENDING_ONLY,
            postgresql_where=PENDING_ONLY,
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the sender's id: re-delivery is a no-op
    patient_id: Mapped[uuid.UUID]
    enrolment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("programme_enrolment.id"))
    kind: Mapped[str] = mapped_column(String(40))
    effective_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(20))  # api | device | screening | referral | mdt | system
    facility_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.PENDING)
    payload: Mapped[dict[str, Any]]
    # Typed copies of the values KPIs aggregate (set-based SQL needs no JSON functions).
    sbp: Mapped[float | None] = mapped_column(Float)
    dbp: Mapped[float | None] = mapped_column(Float)
    hba1c_pct: Mapped[float | None] = mapped_column(Float)
    ldl_mmol: Mapped[float | None] = mapped_column(Float)


class ProgrammeTask(Base):
    __tablename__ = "programme_task"
    __table_args__ = (
        UniqueConstraint("enrolment_id", "ref"),
        Index("ix_programme_task_facility_status_due", "facility_id", "status", "due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # uuid5(enrolment, ref): same on every replay
    enrolment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programme_enrolment.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(30))
    title: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12))
    due_at: Mapped[datetime]
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    event_id: Mapped[str] = mapped_column(String(80))
    detail: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Timepoint(Base):
    """A time point of an enrolment (Chest Pain Center: first contact, first ECG, door, balloon…)."""

    __tablename__ = "programme_timepoint"
    __table_args__ = (Index("ix_programme_timepoint_programme_name_at", "programme", "name", "at"),)

    enrolment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programme_enrolment.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    programme: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime]


class Referral(Base):
    """A referral, shaped as a FHIR ServiceRequest (see `referrals.service_request`)."""

    __tablename__ = "programme_referral"
    __table_args__ = (
        Index("ix_programme_referral_requester_authored", "requester_id", "authored_at"),
        Index("ix_programme_referral_performer_status", "performer_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programme_task.id"), unique=True)
    enrolment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programme_enrolment.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    task_key: Mapped[str] = mapped_column(String(40))
    capability: Mapped[str] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(4))  # up | down
    reason: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12))
    requester_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    performer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisation.id"))
    distance_km: Mapped[float | None] = mapped_column(Float)
    authored_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    arrived_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]  # declined or revoked
    outcome_note: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MdtCase(Base):
    """A multidisciplinary (tumour board) review: the case data, participants from several
    facilities, a scheduled time, and the recommendation that drives the pathway."""

    __tablename__ = "mdt_case"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programme_task.id"), unique=True)
    enrolment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programme_enrolment.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    host_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisation.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default=MdtStatus.OPEN)
    case_data: Mapped[dict[str, Any]]
    scheduled_at: Mapped[datetime | None]
    recommendation: Mapped[str | None] = mapped_column(String(40))
    recommendation_note: Mapped[str | None] = mapped_column(String(1000))
    recommended_at: Mapped[datetime | None]
    recommended_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MdtParticipant(Base):
    __tablename__ = "mdt_participant"
    __table_args__ = (UniqueConstraint("case_id", "facility_id", "role", "practitioner_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mdt_case.id", ondelete="CASCADE"), index=True)
    facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioner.id"))
    role: Mapped[str] = mapped_column(String(40))  # radiologist, thoracic surgeon, oncologist, ...


class KpiValue(Base):
    """One indicator of one programme for one organisational unit and month (pre-aggregated by
    `medloop kpi refresh`)."""

    __tablename__ = "kpi_value"

    period: Mapped[date] = mapped_column(primary_key=True)  # the month's first day
    level: Mapped[str] = mapped_column(String(10), primary_key=True)  # facility | district | region
    unit: Mapped[str] = mapped_column(String(40), primary_key=True)  # organisation code or area code
    programme: Mapped[str] = mapped_column(String(40), primary_key=True)
    indicator: Mapped[str] = mapped_column(String(60), primary_key=True)
    numerator: Mapped[float | None] = mapped_column(Float)
    denominator: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
