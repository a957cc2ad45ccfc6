"""Request and response bodies of the programme endpoints."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

EVENT_ID = r"^[A-Za-z0-9._:\-]{1,64}$"
VISIT_ID = re.compile(r"^[A-Za-z0-9.\-]{1,64}$")  # a FHIR id: a visit is also FHIR Encounter/<id>
Scalar = str | int | float | bool


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EnrolmentIn(_In):
    patient_id: uuid.UUID
    programme: str = Field(max_length=40)
    facility_id: uuid.UUID | None = Field(
        None, description="The care team's facility (default: home facility)."
    )
    practitioner_id: uuid.UUID | None = None
    enrolled_at: AwareDatetime | None = None
    diagnosed: bool = Field(False, description="Diagnosis already confirmed: start at treatment.")
    reason: str | None = Field(None, max_length=200)
    data: dict[str, Scalar] = Field(default_factory=dict, max_length=20, description="e.g. arrival_mode")


class TaskOut(_Out):
    id: uuid.UUID
    enrolment_id: uuid.UUID
    patient_id: uuid.UUID
    programme: str
    key: str
    kind: str
    title: str
    priority: str
    status: str
    due_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    facility_id: uuid.UUID
    detail: dict[str, Any]


class EnrolmentOut(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    programme: str
    definition_version: int
    status: str
    state: str
    stage: str
    step: int
    source: str
    facility_id: uuid.UUID
    practitioner_id: uuid.UUID | None
    enrolled_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    next_due_at: datetime | None
    last_visit_at: datetime | None
    critical: bool
    risk_score: float | None
    facts: dict[str, Any] = Field(default_factory=dict, description="The engine's state variables.")
    timepoints: dict[str, datetime] = Field(default_factory=dict)


class EnrolmentDetail(EnrolmentOut):
    tasks: list[TaskOut]


class EventIn(_In):
    id: str = Field(pattern=EVENT_ID, description="The sender's id: sending it again changes nothing.")
    patient_id: uuid.UUID
    kind: str = Field(max_length=40)
    effective_at: AwareDatetime
    enrolment_id: uuid.UUID | None = None
    facility_id: uuid.UUID | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class EventsIn(_In):
    events: list[Annotated[Any, WithJsonSchema(EventIn.model_json_schema())]] = Field(
        min_length=1,
        max_length=1000,
        description="Events, each an EventIn. Each is checked on its own (`EventIn.model_validate`), "
        "so that a malformed one is refused alone.",
    )


class RefusedOut(BaseModel):
    index: int = Field(description="The event's position in the request, from 0.")
    id: str | None = Field(description="The event's id; null when it has no valid id.")
    status: int = Field(description="The HTTP status the event alone would have got (400, 404, 422).")
    detail: str
    field: str | None = None


class EventsOut(BaseModel):
    stored: list[str]
    duplicates: list[str]
    refused: list[RefusedOut] = Field(
        default_factory=list, description="Events not recorded, with the reason; the others were."
    )


class EventOut(_Out):
    id: str
    kind: str
    effective_at: datetime
    recorded_at: datetime
    source: str
    status: str
    payload: dict[str, Any]


class MedicationChange(_In):
    drug: str = Field(max_length=80)
    action: Literal["start", "stop", "change"]
    dose: str | None = Field(None, max_length=80)


class VisitIn(_In):
    id: str | None = Field(
        None,
        pattern=VISIT_ID.pattern,
        description="Send one to make retries safe. A FHIR id (letters, digits, '-' and '.'; at most 64): "
        "the visit is also FHIR Encounter/<id>.",
    )
    patient_id: uuid.UUID
    facility_id: uuid.UUID
    effective_at: AwareDatetime
    sbp: float | None = None
    dbp: float | None = None
    heart_rate: float | None = None
    fpg_mmol: float | None = None
    random_glucose_mmol: float | None = None
    hba1c_pct: float | None = None
    ldl_mmol: float | None = None
    weight_kg: float | None = None
    medication_changes: list[MedicationChange] = Field(default_factory=list, max_length=20)
    notes: str | None = Field(None, max_length=2000)


class VisitOut(BaseModel):
    event_id: str
    stored: bool
    enrolments: list[EnrolmentOut]


class CallOutcomeIn(_In):
    id: str | None = Field(None, pattern=EVENT_ID)
    outcome: Literal["reached_rescheduled", "not_reached", "moved_away", "died"]
    at: AwareDatetime | None = None
    rescheduled_to: AwareDatetime | None = None
    note: str | None = Field(None, max_length=500)


class TaskCompleteIn(_In):
    id: str | None = Field(None, pattern=EVENT_ID)
    status: Literal["done", "cancelled"] = "done"
    at: AwareDatetime | None = None


class ReferralOut(_Out):
    id: uuid.UUID
    task_id: uuid.UUID
    enrolment_id: uuid.UUID
    patient_id: uuid.UUID
    programme: str
    capability: str
    direction: str
    reason: str
    priority: str
    status: str
    requester_id: uuid.UUID
    performer_id: uuid.UUID | None
    distance_km: float | None
    authored_at: datetime
    accepted_at: datetime | None
    arrived_at: datetime | None
    completed_at: datetime | None
    closed_at: datetime | None
    outcome_note: str | None


class ReferralStatusIn(_In):
    status: Literal["accepted", "arrived", "completed", "declined", "revoked"]
    at: AwareDatetime | None = None
    note: str | None = Field(None, max_length=500)


class ParticipantIn(_In):
    facility_id: uuid.UUID
    role: str = Field(min_length=1, max_length=40)
    practitioner_id: uuid.UUID | None = None


class ParticipantOut(_Out):
    facility_id: uuid.UUID
    role: str
    practitioner_id: uuid.UUID | None


class MdtScheduleIn(_In):
    scheduled_at: AwareDatetime
    participants: list[ParticipantIn] = Field(min_length=1, max_length=30)


class MdtRecommendationIn(_In):
    recommendation: str = Field(max_length=40)
    note: str | None = Field(None, max_length=1000)
    follow_up_at: AwareDatetime | None = None
    at: AwareDatetime | None = None


class MdtCaseOut(_Out):
    id: uuid.UUID
    enrolment_id: uuid.UUID
    patient_id: uuid.UUID
    programme: str
    host_id: uuid.UUID | None
    status: str
    case_data: dict[str, Any]
    scheduled_at: datetime | None
    recommendation: str | None
    recommendation_note: str | None
    recommended_at: datetime | None
    participants: list[ParticipantOut] = Field(default_factory=list)


class KpiOut(BaseModel):
    period: str
    level: str
    unit: str
    programme: str
    indicator: str
    numerator: float | None
    denominator: float | None
    value: float | None
    refreshed_at: datetime
