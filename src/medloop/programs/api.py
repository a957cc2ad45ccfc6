"""/api/v1 programme endpoints: definitions, enrolments, events and visits, tasks, worklists,
referrals (and their FHIR ServiceRequest form), MDT cases and KPIs. Thin: parse, authorise, call
the service, shape the response. Every patient query is facility-scoped in the service layer."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import ValidationError

from medloop.auth.deps import CurrentPrincipal, DbSession
from medloop.auth.models import Role
from medloop.errors import BadRequest, Unprocessable, error_summary, field_errors
from medloop.pagination import Page, PageParams, page_params
from medloop.programs import kpi, mdt, referrals, service, worklist
from medloop.programs.definitions import get_definition, load_definitions
from medloop.programs.models import Enrolment, MdtCase
from medloop.programs.schemas import (
    EVENT_ID,
    CallOutcomeIn,
    EnrolmentDetail,
    EnrolmentIn,
    EnrolmentOut,
    EventIn,
    EventOut,
    EventsIn,
    EventsOut,
    KpiOut,
    MdtCaseOut,
    MdtRecommendationIn,
    MdtScheduleIn,
    ParticipantOut,
    ReferralOut,
    ReferralStatusIn,
    RefusedOut,
    TaskCompleteIn,
    TaskOut,
    VisitIn,
    VisitOut,
)
from medloop.store.base import utcnow

router = APIRouter(prefix="/api/v1", tags=["programmes"])

READERS = (Role.CLINICIAN, Role.PROGRAMME_MANAGER)
WRITERS = (Role.CLINICIAN,)
Paging = Annotated[PageParams, Depends(page_params)]


def enrolment_out(e: Enrolment) -> EnrolmentOut:
    data = e.data or {}
    return EnrolmentOut.model_validate(e).model_copy(
        update={"facts": data.get("vars", {}), "timepoints": data.get("timepoints", {})}
    )


def case_out(session: DbSession, case: MdtCase) -> MdtCaseOut:
    people = [ParticipantOut.model_validate(p) for p in mdt.participants(session, case.id)]
    return MdtCaseOut.model_validate(case).model_copy(update={"participants": people})


# --- definitions ---------------------------------------------------------------------------------


@router.get("/programmes")
def list_programmes(_principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """Every programme definition: states and stages, parameters with source and confirmed flag."""
    return [d.summary() for d in load_definitions().values()]


@router.get("/programmes/{programme}")
def read_programme(programme: str, _principal: CurrentPrincipal) -> dict[str, Any]:
    return get_definition(programme).summary()


# --- enrolments ----------------------------------------------------------------------------------


@router.post("/enrolments", response_model=EnrolmentDetail, status_code=status.HTTP_201_CREATED)
def create_enrolment(data: EnrolmentIn, session: DbSession, principal: CurrentPrincipal) -> EnrolmentDetail:
    principal.require_role(*WRITERS)
    enrolment = service.enrol(
        session,
        principal,
        data.patient_id,
        data.programme,
        at=data.enrolled_at,
        facility_id=data.facility_id,
        practitioner_id=data.practitioner_id,
        diagnosed=data.diagnosed,
        reason=data.reason,
        data=data.data,
    )
    return _detail(session, enrolment)


def _detail(session: DbSession, enrolment: Enrolment) -> EnrolmentDetail:
    tasks = [TaskOut.model_validate(t) for t in service.enrolment_tasks(session, enrolment.id)]
    return EnrolmentDetail(**enrolment_out(enrolment).model_dump(), tasks=tasks)


@router.get("/enrolments", response_model=Page[EnrolmentOut])
def search_enrolments(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    patient_id: uuid.UUID | None = None,
    programme: str | None = None,
    facility_id: uuid.UUID | None = None,
    enrolment_status: Annotated[str | None, Query(alias="status", pattern="^(active|ended)$")] = None,
    stage: str | None = None,
) -> Page[EnrolmentOut]:
    principal.require_role(*READERS)
    rows, total = service.search_enrolments(
        session,
        principal,
        limit=page.limit,
        offset=page.offset,
        patient_id=patient_id,
        programme=programme,
        facility_id=facility_id,
        status=enrolment_status,
        stage=stage,
    )
    return Page.of([enrolment_out(e) for e in rows], total, page)


@router.get("/enrolments/{enrolment_id}", response_model=EnrolmentDetail)
def read_enrolment(
    enrolment_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> EnrolmentDetail:
    principal.require_role(*READERS)
    return _detail(session, service.get_enrolment(session, principal, enrolment_id))


@router.get("/enrolments/{enrolment_id}/events", response_model=list[EventOut])
def enrolment_events(
    enrolment_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> list[EventOut]:
    principal.require_role(*READERS)
    enrolment = service.get_enrolment(session, principal, enrolment_id)
    return [EventOut.model_validate(e) for e in service.enrolment_events(session, enrolment)]


@router.post("/enrolments/{enrolment_id}/call-outcomes", response_model=EnrolmentOut)
def call_outcome(
    enrolment_id: uuid.UUID, data: CallOutcomeIn, session: DbSession, principal: CurrentPrincipal
) -> EnrolmentOut:
    principal.require_role(*WRITERS)
    enrolment = service.record_call_outcome(
        session,
        principal,
        enrolment_id,
        outcome=data.outcome,
        at=data.at or utcnow(),
        rescheduled_to=data.rescheduled_to,
        note=data.note,
        event_id=data.id,
    )
    return enrolment_out(enrolment)


# --- events and visits ---------------------------------------------------------------------------


@router.post("/events", response_model=EventsOut, status_code=status.HTTP_202_ACCEPTED)
def post_events(data: EventsIn, session: DbSession, principal: CurrentPrincipal) -> EventsOut:
    """Test results, referral outcomes, Chest Pain Center time points and any other event kind the
    programmes know (see GET /api/v1/programmes). Each event is checked on its own: those that can
    be recorded are, the others are listed under `refused` with the reason (a malformed event, 422,
    included). Ids already stored are `duplicates`. When no event can be recorded, the answer is
    the first refusal's error."""
    principal.require_role(*WRITERS)
    positions: list[int] = []  # request position of each well-formed event
    events: list[EventIn] = []
    refused: list[service.Refused] = []
    for index, item in enumerate(data.events):
        try:
            events.append(EventIn.model_validate(item))
        except ValidationError as exc:
            refused.append(_malformed(index, item, exc))
            continue
        positions.append(index)
    stored, turned_away = service.record_batch(session, principal, [_new_event(e) for e in events])
    refused += [service.Refused(positions[r.index], r.id, r.problem) for r in turned_away]
    refused.sort(key=lambda r: r.index)
    if len(refused) == len(data.events):
        first = refused[0].problem
        first.errors = [_refused_out(r).model_dump(exclude_none=True) for r in refused]
        raise first
    fresh, not_recorded = set(stored), {r.index for r in refused}
    return EventsOut(
        stored=stored,
        duplicates=[
            e.id
            for e, i in zip(events, positions, strict=True)
            if e.id not in fresh and i not in not_recorded
        ],
        refused=[_refused_out(r) for r in refused],
    )


def _new_event(e: EventIn) -> service.NewEvent:
    return service.NewEvent(
        e.id, e.patient_id, e.kind, e.effective_at, e.payload, "api", e.enrolment_id, e.facility_id
    )


def _malformed(index: int, item: Any, exc: ValidationError) -> service.Refused:
    """The refusal of an event that is not a well-formed EventIn: what is wrong, where."""
    errors = field_errors(exc.errors())
    event_id = item.get("id") if isinstance(item, dict) else None
    valid_id = isinstance(event_id, str) and re.fullmatch(EVENT_ID, event_id) is not None
    return service.Refused(
        index,
        event_id if valid_id else None,
        Unprocessable(
            f"event {index}: {error_summary(errors, None, whole='event')}", field=errors[0]["loc"] or None
        ),
    )


def _refused_out(refused: service.Refused) -> RefusedOut:
    problem = refused.problem
    return RefusedOut(
        index=refused.index,
        id=refused.id,
        status=problem.status,
        detail=problem.detail,
        field=problem.extra.get("field"),
    )


@router.post("/visits", response_model=VisitOut, status_code=status.HTTP_201_CREATED)
def post_visit(data: VisitIn, session: DbSession, principal: CurrentPrincipal) -> VisitOut:
    principal.require_role(*WRITERS)
    measures = data.model_dump(
        include={
            "sbp",
            "dbp",
            "heart_rate",
            "fpg_mmol",
            "random_glucose_mmol",
            "hba1c_pct",
            "ldl_mmol",
            "weight_kg",
        },
        exclude_none=True,
    )
    event_id, stored, enrolments = service.record_visit(
        session,
        principal,
        patient_id=data.patient_id,
        facility_id=data.facility_id,
        at=data.effective_at,
        measures=measures,
        medication_changes=[m.model_dump(exclude_none=True) for m in data.medication_changes],
        notes=data.notes,
        event_id=data.id,
    )
    return VisitOut(event_id=event_id, stored=stored, enrolments=[enrolment_out(e) for e in enrolments])


# --- tasks and worklists -------------------------------------------------------------------------


@router.get("/tasks", response_model=Page[TaskOut])
def search_tasks(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    facility_id: uuid.UUID | None = None,
    task_status: Annotated[str | None, Query(alias="status", pattern="^(open|done|cancelled)$")] = "open",
    kind: str | None = None,
    priority: Annotated[str | None, Query(pattern="^(routine|urgent)$")] = None,
    programme: str | None = None,
) -> Page[TaskOut]:
    principal.require_role(*READERS)
    rows, total = service.search_tasks(
        session,
        principal,
        limit=page.limit,
        offset=page.offset,
        facility_id=facility_id,
        status=task_status,
        kind=kind,
        priority=priority,
        programme=programme,
    )
    return Page.of([TaskOut.model_validate(t) for t in rows], total, page)


@router.post("/tasks/{task_id}/complete", response_model=TaskOut)
def complete_task(
    task_id: uuid.UUID, data: TaskCompleteIn, session: DbSession, principal: CurrentPrincipal
) -> TaskOut:
    principal.require_role(*WRITERS)
    task = service.complete_task(
        session, principal, task_id, status=data.status, at=data.at or utcnow(), event_id=data.id
    )
    return TaskOut.model_validate(task)


def _worklist_filter(
    facility_id: uuid.UUID | None = None,
    practitioner_id: uuid.UUID | None = None,
    programme: str | None = None,
    critical_only: bool = False,
    min_risk: Annotated[float | None, Query(ge=0, le=100)] = None,
) -> worklist.WorklistFilter:
    return worklist.WorklistFilter(facility_id, practitioner_id, programme, critical_only, min_risk)


WorklistOnly = Annotated[worklist.WorklistFilter, Depends(_worklist_filter)]


def _worklist(
    session: DbSession,
    principal: CurrentPrincipal,
    page: PageParams,
    only: worklist.WorklistFilter,
    *,
    lost: bool,
    as_of: datetime | None,
) -> Page[worklist.WorklistItem]:
    as_of = _aware(as_of)
    principal.require_role(*READERS)
    items, total = worklist.overdue(
        session,
        principal,
        as_of=as_of or utcnow(),
        lost=lost,
        only=only,
        limit=page.limit,
        offset=page.offset,
    )
    return Page.of(items, total, page)


@router.get("/worklists/overdue", response_model=Page[worklist.WorklistItem])
def overdue(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    only: WorklistOnly,
    as_of: datetime | None = None,
) -> Page[worklist.WorklistItem]:
    """Overdue for follow-up, by up to 12 months: critical first, then ASCVD risk, then days overdue."""
    return _worklist(session, principal, page, only, lost=False, as_of=as_of)


@router.get("/worklists/lost-to-follow-up", response_model=Page[worklist.WorklistItem])
def lost_to_follow_up(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    only: WorklistOnly,
    as_of: datetime | None = None,
) -> Page[worklist.WorklistItem]:
    """Overdue by more than 12 months."""
    return _worklist(session, principal, page, only, lost=True, as_of=as_of)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise BadRequest("as_of needs a time zone (e.g. 2026-10-31T00:00:00Z)", field="as_of")
    return value


# --- referrals -----------------------------------------------------------------------------------


@router.get("/referrals", response_model=Page[ReferralOut])
def search_referrals(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    requester_id: uuid.UUID | None = None,
    performer_id: uuid.UUID | None = None,
    referral_status: Annotated[str | None, Query(alias="status")] = None,
    patient_id: uuid.UUID | None = None,
) -> Page[ReferralOut]:
    principal.require_role(*READERS)
    rows, total = referrals.search_referrals(
        session,
        principal,
        limit=page.limit,
        offset=page.offset,
        requester_id=requester_id,
        performer_id=performer_id,
        status=referral_status,
        patient_id=patient_id,
    )
    return Page.of([ReferralOut.model_validate(r) for r in rows], total, page)


@router.get("/referrals/{referral_id}", response_model=ReferralOut)
def read_referral(referral_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> ReferralOut:
    principal.require_role(*READERS)
    return ReferralOut.model_validate(referrals.get_referral(session, principal, referral_id))


@router.get("/referrals/{referral_id}/service-request")
def read_service_request(
    referral_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The referral as a FHIR R4 ServiceRequest."""
    principal.require_role(*READERS)
    return referrals.service_request(referrals.get_referral(session, principal, referral_id))


@router.post("/referrals/{referral_id}/status", response_model=ReferralOut)
def referral_status(
    referral_id: uuid.UUID, data: ReferralStatusIn, session: DbSession, principal: CurrentPrincipal
) -> ReferralOut:
    principal.require_role(*WRITERS)
    found = referrals.set_status(
        session, principal, referral_id, data.status, at=data.at or utcnow(), note=data.note
    )
    return ReferralOut.model_validate(found)


# --- MDT -----------------------------------------------------------------------------------------


@router.get("/mdt-cases", response_model=Page[MdtCaseOut])
def search_cases(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    host_id: uuid.UUID | None = None,
    case_status: Annotated[str | None, Query(alias="status")] = None,
) -> Page[MdtCaseOut]:
    principal.require_role(*READERS)
    rows, total = mdt.search_cases(
        session, principal, limit=page.limit, offset=page.offset, host_id=host_id, status=case_status
    )
    return Page.of([case_out(session, c) for c in rows], total, page)


@router.get("/mdt-cases/{case_id}", response_model=MdtCaseOut)
def read_case(case_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> MdtCaseOut:
    principal.require_role(*READERS)
    return case_out(session, mdt.get_case(session, principal, case_id))


@router.post("/mdt-cases/{case_id}/schedule", response_model=MdtCaseOut)
def schedule_case(
    case_id: uuid.UUID, data: MdtScheduleIn, session: DbSession, principal: CurrentPrincipal
) -> MdtCaseOut:
    principal.require_role(*WRITERS)
    people = [mdt.Participant(p.facility_id, p.role, p.practitioner_id) for p in data.participants]
    return case_out(session, mdt.schedule(session, principal, case_id, data.scheduled_at, people))


@router.post("/mdt-cases/{case_id}/recommendation", response_model=MdtCaseOut)
def recommend(
    case_id: uuid.UUID, data: MdtRecommendationIn, session: DbSession, principal: CurrentPrincipal
) -> MdtCaseOut:
    principal.require_role(*WRITERS)
    found = mdt.recommend(
        session,
        principal,
        case_id,
        data.recommendation,
        at=data.at or utcnow(),
        note=data.note,
        follow_up_at=data.follow_up_at,
    )
    return case_out(session, found)


# --- KPIs ----------------------------------------------------------------------------------------


@router.get("/kpis", response_model=Page[KpiOut])
def read_kpis(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Paging,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")] = None,
    level: Annotated[str | None, Query(pattern="^(facility|district|region)$")] = None,
    unit: str | None = None,
    programme: str | None = None,
    indicator: str | None = None,
) -> Page[KpiOut]:
    """Pre-aggregated KPI values (`medloop kpi refresh`), for the units in the caller's scope."""
    principal.require_role(*READERS)
    rows, total = kpi.search(
        session,
        principal,
        period=kpi.parse_period(period) if period else None,
        level=level,
        unit=unit,
        programme=programme,
        indicator=indicator,
        limit=page.limit,
        offset=page.offset,
    )
    items = [
        KpiOut(
            period=f"{r.period.year:04d}-{r.period.month:02d}",
            level=r.level,
            unit=r.unit,
            programme=r.programme,
            indicator=r.indicator,
            numerator=r.numerator,
            denominator=r.denominator,
            value=r.value,
            refreshed_at=r.refreshed_at,
        )
        for r in rows
    ]
    return Page.of(items, total, page)
