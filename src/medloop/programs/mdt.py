"""MDT review (online tumour board): a case opens when the engine opens an `mdt_review` task. It
carries the case data (imaging categories, pathology, risk), is hosted by the nearest facility with
the programme's MDT capability, gets participants from several facilities and a scheduled time,
and its recorded recommendation becomes an `mdt_recommendation` event that drives the pathway."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.errors import BadRequest, Conflict, NotFound
from medloop.network.models import Organisation
from medloop.network.routing import Network
from medloop.people.models import Practitioner
from medloop.programs.definitions import Definition, get_definition
from medloop.programs.models import Enrolment, MdtCase, MdtParticipant, MdtStatus, ProgrammeTask, TaskStatus
from medloop.programs.sql import chunks, table
from medloop.store.bulk import dialect_insert

CASE_NAMESPACE = uuid.UUID("51d8b2f4-9e07-5a3c-b6d1-7f2e0c4a9b86")
RECOMMENDATION_NAMESPACE = uuid.UUID("a2c7e9f1-3b58-5d40-9e6a-1d8b4f0c7e32")
# What a case shows of the enrolment's state (and of how the patient was found).
CASE_FIELDS = ("lung_rads_category", "nodule_mean_mm", "pathology", "treatment", "ascvd_risk")
SEED_FIELDS = ("model", "category", "source")


def case_id(task_row_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CASE_NAMESPACE, str(task_row_id))


def sync(
    session: Session,
    task_rows: Sequence[Mapping[str, Any]],
    enrolments: Mapping[uuid.UUID, Mapping[str, Any]],
    definitions: Mapping[str, Definition],
) -> None:
    """Open a case for each newly opened MDT task; cancel cases whose task was cancelled."""
    if not task_rows:
        return
    existing: set[uuid.UUID] = set()
    for part in chunks([r["id"] for r in task_rows]):
        existing.update(session.scalars(select(MdtCase.task_id).where(MdtCase.task_id.in_(part))))
    new = [r for r in task_rows if r["status"] == TaskStatus.OPEN.value and r["id"] not in existing]
    cancelled = [
        r["id"] for r in task_rows if r["status"] == TaskStatus.CANCELLED.value and r["id"] in existing
    ]
    if cancelled:
        _cancel(session, MdtCase.task_id.in_(cancelled))
    if not new:
        return
    network = Network.load(session)
    states: dict[uuid.UUID, dict[str, Any]] = dict(
        session.execute(
            select(Enrolment.id, Enrolment.data).where(Enrolment.id.in_({r["enrolment_id"] for r in new}))
        ).all()
    )
    rows = []
    for task in new:
        enrolment = enrolments[task["enrolment_id"]]
        capability = definitions[task["programme"]].raw.get("mdt", {}).get("capability")
        origin = network.by_id(enrolment["facility_id"])
        host = (
            network.nearest(origin.latitude, origin.longitude, capability) if origin and capability else None
        )
        variables = states.get(task["enrolment_id"], {}).get("vars", {})
        data = {k: variables[k] for k in CASE_FIELDS if k in variables}
        data |= {f"found_by_{k}": enrolment["seed"][k] for k in SEED_FIELDS if k in enrolment["seed"]}
        data["question"] = task["title"]
        rows.append(
            {
                "id": case_id(task["id"]),
                "task_id": task["id"],
                "enrolment_id": task["enrolment_id"],
                "patient_id": task["patient_id"],
                "programme": task["programme"],
                "host_id": host.facility.id if host else None,
                "status": MdtStatus.OPEN.value,
                "case_data": data,
                "created_at": task["opened_at"],
            }
        )
    stmt = dialect_insert(session.connection(), table(MdtCase)).on_conflict_do_nothing(index_elements=["id"])
    session.execute(stmt, rows)


def cancel_void(session: Session, enrolment_ids: Sequence[uuid.UUID]) -> None:
    void = select(ProgrammeTask.id).where(
        ProgrammeTask.enrolment_id.in_(enrolment_ids), ProgrammeTask.status == TaskStatus.VOID.value
    )
    _cancel(session, MdtCase.task_id.in_(void))


def _cancel(session: Session, condition: Any) -> None:
    session.execute(
        update(MdtCase)
        .where(condition, MdtCase.status.in_([MdtStatus.OPEN.value, MdtStatus.SCHEDULED.value]))
        .values(status=MdtStatus.CANCELLED.value)
    )


def get_case(session: Session, principal: Principal, case: uuid.UUID, *, audit: bool = True) -> MdtCase:
    found = session.scalar(
        select(MdtCase).where(MdtCase.id == case, patient_in_scope(principal, MdtCase.patient_id))
    )
    if found is None:
        raise NotFound(f"MDT case {case} not found in your facility scope")
    if audit:
        record_access(session, principal, "read", "MdtCase", [found.patient_id], resource_id=str(found.id))
    return found


def participants(session: Session, case: uuid.UUID) -> list[MdtParticipant]:
    return list(
        session.scalars(
            select(MdtParticipant).where(MdtParticipant.case_id == case).order_by(MdtParticipant.role)
        )
    )


def search_cases(
    session: Session,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    host_id: uuid.UUID | None = None,
    status: str | None = None,
) -> tuple[list[MdtCase], int]:
    stmt = select(MdtCase).where(patient_in_scope(principal, MdtCase.patient_id))
    if host_id is not None:
        stmt = stmt.where(MdtCase.host_id == host_id)
    if status is not None:
        stmt = stmt.where(MdtCase.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(session.scalars(stmt.order_by(MdtCase.created_at, MdtCase.id).limit(limit).offset(offset)))
    record_access(
        session, principal, "search", "MdtCase", [r.patient_id for r in rows], detail={"total": total}
    )
    return rows, total


@dataclass(frozen=True)
class Participant:
    facility_id: uuid.UUID
    role: str
    practitioner_id: uuid.UUID | None = None


def schedule(
    session: Session,
    principal: Principal,
    case: uuid.UUID,
    scheduled_at: datetime,
    people: Sequence[Participant],
) -> MdtCase:
    found = get_case(session, principal, case, audit=False)
    if found.status not in (MdtStatus.OPEN, MdtStatus.SCHEDULED):
        raise Conflict(f"the case is {found.status}; only open or scheduled cases can be scheduled")
    if not people:
        raise BadRequest("an MDT review needs participants", field="participants")
    facilities = {p.facility_id for p in people}
    known = set(session.scalars(select(Organisation.id).where(Organisation.id.in_(facilities))))
    if facilities - known:
        raise BadRequest(f"unknown facility {sorted(map(str, facilities - known))[0]}", field="participants")
    named = {p.practitioner_id for p in people if p.practitioner_id}
    if named - set(session.scalars(select(Practitioner.id).where(Practitioner.id.in_(named)))):
        raise BadRequest("unknown practitioner among the participants", field="participants")
    session.query(MdtParticipant).filter(MdtParticipant.case_id == found.id).delete()
    session.add_all(
        MdtParticipant(
            case_id=found.id, facility_id=p.facility_id, practitioner_id=p.practitioner_id, role=p.role
        )
        for p in people
    )
    found.scheduled_at = scheduled_at
    found.status = MdtStatus.SCHEDULED.value
    session.flush()
    record_access(session, principal, "update", "MdtCase", [found.patient_id], resource_id=str(found.id))
    return found


def recommend(
    session: Session,
    principal: Principal,
    case: uuid.UUID,
    recommendation: str,
    *,
    at: datetime,
    note: str | None = None,
    follow_up_at: datetime | None = None,
) -> MdtCase:
    """Record the recommendation; it becomes an event for the enrolment (and moves the pathway)."""
    from medloop.programs.service import NewEvent, record_events

    found = get_case(session, principal, case, audit=False)
    if found.status == MdtStatus.REVIEWED:
        raise Conflict("the case already has a recommendation")
    if found.status == MdtStatus.CANCELLED:
        raise Conflict("the case was cancelled")
    allowed = get_definition(found.programme).mdt_recommendations
    if recommendation not in allowed:
        raise BadRequest(
            f"unknown recommendation {recommendation!r}; one of: {', '.join(allowed)}", field="recommendation"
        )
    found.recommendation, found.recommendation_note = recommendation, note
    found.recommended_at, found.recommended_by = at, principal.username
    found.status = MdtStatus.REVIEWED.value
    session.flush()
    record_access(session, principal, "update", "MdtCase", [found.patient_id], resource_id=str(found.id))
    payload: dict[str, Any] = {"case_id": str(found.id), "recommendation": recommendation}
    if follow_up_at is not None:
        payload["follow_up_at"] = follow_up_at.isoformat()
    event = NewEvent(
        str(uuid.uuid5(RECOMMENDATION_NAMESPACE, str(found.id))),
        found.patient_id,
        "mdt_recommendation",
        at,
        payload,
        source="mdt",
        enrolment_id=found.enrolment_id,
        facility_id=found.host_id,
    )
    record_events(session, principal, [event])
    return found
