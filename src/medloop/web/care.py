"""The programme pages: the clinician's worklist (overdue or lost to follow-up, ordered by
criticality and risk; one click records a call outcome or a visit), the MDT board (open and
scheduled cases with their data; record a recommendation), and the programme course shown on a
patient's timeline. Everything goes through the programmes engine's service functions, which
apply the facility scope and write the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.deps import DbSession
from medloop.auth.models import Role
from medloop.auth.principal import Principal
from medloop.auth.scope import for_reads, patient_in_scope
from medloop.errors import BadRequest
from medloop.programs import mdt, referrals, service, worklist
from medloop.programs.models import MdtCase, MdtStatus, Timepoint
from medloop.store.base import utcnow
from medloop.web import lang
from medloop.web.render import PageRoute, render
from medloop.web.session import CheckedWeb, CurrentWeb

router = APIRouter(route_class=PageRoute, include_in_schema=False)

WORKLIST_ROLES = (Role.CLINICIAN,)
MDT_ROLES = (Role.CLINICIAN, Role.PROGRAMME_MANAGER)
CALL_OUTCOMES = ("reached_rescheduled", "not_reached", "moved_away", "died")
PAGE = 50
MDT_PAGE = 50  # the oldest cases of each status (open, scheduled) on the board


def programme_course(session: Session, principal: Principal, patient_id: uuid.UUID) -> dict[str, Any]:
    """Enrolments with their stage, time points and tasks; referrals; MDT decisions."""
    enrolments, _ = service.search_enrolments(session, principal, limit=20, offset=0, patient_id=patient_id)
    ids = [e.id for e in enrolments]
    timepoints = (
        list(session.scalars(select(Timepoint).where(Timepoint.enrolment_id.in_(ids)).order_by(Timepoint.at)))
        if ids
        else []
    )
    refs, _ = referrals.search_referrals(session, principal, limit=50, offset=0, patient_id=patient_id)
    cases = list(
        session.scalars(
            select(MdtCase)
            .where(MdtCase.patient_id == patient_id, patient_in_scope(principal, MdtCase.patient_id))
            .order_by(MdtCase.created_at, MdtCase.id)
            .limit(50)
        )
    )  # this patient's only (mdt.search_cases has no patient filter: it would read every case in scope)
    if cases:
        record_access(session, principal, "search", "MdtCase", [patient_id], detail={"view": "timeline"})
    return {
        "enrolments": enrolments,
        "timepoints": timepoints,
        "tasks": {e.id: service.enrolment_tasks(session, e.id) for e in enrolments},
        "referrals": refs,
        "cases": cases,
    }


def _list_kind(value: str | None) -> bool:
    return value == "lost"


@router.get("/worklist")
def worklist_page(request: Request, session: DbSession, web: CurrentWeb, list: str | None = None) -> Response:
    web.principal.require_role(*WORKLIST_ROLES)
    lost = _list_kind(list)
    items, total = worklist.overdue(session, web.principal, as_of=utcnow(), lost=lost, limit=PAGE)
    return render(
        request,
        "worklist.html",
        {"items": items, "total": total, "lost": lost, "outcomes": CALL_OUTCOMES, "today": date.today()},
    )


def _still_overdue(session: Session, principal: Principal, enrolment_id: uuid.UUID) -> bool:
    enrolment = service.get_enrolment(session, principal, enrolment_id, audit=False)
    due = enrolment.next_due_at
    return enrolment.status == "active" and due is not None and due < utcnow()


def _done(request: Request, key: str, remove: bool) -> JSONResponse:
    t = lang.Translator(lang.chosen(request))
    return JSONResponse({"message": t(key), "remove": remove})


@router.post("/worklist/{enrolment_id}/call")
def record_call(
    request: Request,
    session: DbSession,
    web: CheckedWeb,
    enrolment_id: uuid.UUID,
    outcome: Annotated[str, Form()],
    rescheduled_to: Annotated[date | None, Form()] = None,
    note: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    web.principal.require_role(*WORKLIST_ROLES)
    if outcome not in CALL_OUTCOMES:
        raise BadRequest(f"unknown call outcome {outcome!r}; one of: {', '.join(CALL_OUTCOMES)}")
    when = None
    if outcome == "reached_rescheduled":
        day = rescheduled_to or date.today() + timedelta(days=7)
        when = datetime.combine(day, time(9), tzinfo=UTC)
    service.record_call_outcome(
        session,
        web.principal,
        enrolment_id,
        outcome=outcome,
        at=utcnow(),
        rescheduled_to=when,
        note=note or None,
    )
    return _done(request, "worklist.call_saved", not _still_overdue(session, web.principal, enrolment_id))


@router.post("/worklist/{enrolment_id}/visit")
def record_visit(
    request: Request,
    session: DbSession,
    web: CheckedWeb,
    enrolment_id: uuid.UUID,
    sbp: Annotated[float, Form()],
    dbp: Annotated[float, Form()],
) -> Response:
    web.principal.require_role(*WORKLIST_ROLES)
    enrolment = service.get_enrolment(session, web.principal, enrolment_id, audit=False)
    service.record_visit(
        session,
        web.principal,
        patient_id=enrolment.patient_id,
        facility_id=enrolment.facility_id,
        at=utcnow(),
        measures={"sbp": sbp, "dbp": dbp},
    )
    return _done(request, "worklist.visit_saved", not _still_overdue(session, web.principal, enrolment_id))


@router.get("/mdt")
def mdt_board(request: Request, session: DbSession, web: CurrentWeb) -> Response:
    web.principal.require_role(*MDT_ROLES)
    principal = for_reads(session, web.principal)
    cases, total = [], 0
    for status in (MdtStatus.OPEN, MdtStatus.SCHEDULED):
        rows, n = mdt.search_cases(session, principal, limit=MDT_PAGE, offset=0, status=status.value)
        cases += rows
        total += n
    cases.sort(key=lambda c: (c.scheduled_at or c.created_at, c.id))
    options = {c.programme: mdt.get_definition(c.programme).mdt_recommendations for c in cases}
    reviewed, _ = mdt.search_cases(session, principal, limit=20, offset=0, status=MdtStatus.REVIEWED.value)
    return render(
        request, "mdt.html", {"cases": cases, "total": total, "options": options, "reviewed": reviewed}
    )


@router.post("/mdt/{case_id}/recommend")
def mdt_recommend(
    request: Request,
    session: DbSession,
    web: CheckedWeb,
    case_id: uuid.UUID,
    recommendation: Annotated[str, Form()],
    note: Annotated[str | None, Form(max_length=1000)] = None,
) -> Response:
    web.principal.require_role(Role.CLINICIAN)
    mdt.recommend(session, web.principal, case_id, recommendation, at=utcnow(), note=note or None)
    return _done(request, "mdt.saved", True)
