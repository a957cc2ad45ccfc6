"""Referrals: created when the engine opens a referral task, routed through the care network,
tracked to completion with times, and shown as FHIR ServiceRequests.

Routing (`route`): a referral *up* goes to the nearest active facility with the capability,
measured from the facility that refers (`Network.nearest`: great-circle distance, ties to the
lowest code); a referral *down* goes back to the patient's home facility when it has the
capability (the community centre), otherwise to the nearest capable facility to the home facility.
The referring facility of a referral down is where the patient was last referred up to.

Status: requested → accepted → arrived → completed, or declined / revoked; `unrouted` when no
facility has the capability. Completed, declined and revoked become a `referral_outcome` event for
the enrolment, which closes the referral task and may move the pathway on."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.errors import BadRequest, Conflict, NotFound
from medloop.network.routing import Facility, Network, Route, haversine_km
from medloop.people.models import Patient
from medloop.programs.models import ProgrammeTask, Referral, ReferralStatus, TaskStatus
from medloop.programs.sql import chunks, table
from medloop.store.base import utcnow
from medloop.store.bulk import dialect_insert

REFERRAL_NAMESPACE = uuid.UUID("3c9a5e21-7b64-5d1f-a0e8-92d4f6b1c7a3")
OUTCOME_NAMESPACE = uuid.UUID("e7a41c90-5d2b-5f63-8c1e-0b9d3f6a2e58")
OPEN = (
    ReferralStatus.REQUESTED.value,
    ReferralStatus.UNROUTED.value,
    ReferralStatus.ACCEPTED.value,
    ReferralStatus.ARRIVED.value,
)
ROUTED = (ReferralStatus.REQUESTED.value, ReferralStatus.ACCEPTED.value, ReferralStatus.ARRIVED.value)
NEXT: dict[str, tuple[str, ...]] = {
    ReferralStatus.REQUESTED: (ReferralStatus.ACCEPTED, ReferralStatus.DECLINED, ReferralStatus.REVOKED),
    ReferralStatus.UNROUTED: (ReferralStatus.REVOKED,),
    ReferralStatus.ACCEPTED: (
        ReferralStatus.ARRIVED,
        ReferralStatus.COMPLETED,
        ReferralStatus.DECLINED,
        ReferralStatus.REVOKED,
    ),
    ReferralStatus.ARRIVED: (ReferralStatus.COMPLETED, ReferralStatus.REVOKED),
}
FHIR_STATUS = {
    ReferralStatus.REQUESTED: "active",
    ReferralStatus.ACCEPTED: "active",
    ReferralStatus.ARRIVED: "active",
    ReferralStatus.UNROUTED: "draft",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.DECLINED: "revoked",
    ReferralStatus.REVOKED: "revoked",
}
EXT = "https://medloop.dev/fhir/StructureDefinition"
CAPABILITY_SYSTEM = "https://medloop.dev/CodeSystem/capability"
TASK_IDENTIFIER_SYSTEM = "https://medloop.dev/programme-task"


def referral_id(task_row_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(REFERRAL_NAMESPACE, str(task_row_id))


def route(
    network: Network, capability: str, direction: str, origin: Facility, home: Facility | None
) -> Route | None:
    """Where a referral goes (see the module docstring)."""
    if direction == "down" and home is not None:
        if capability in home.capabilities:
            return Route(home, _distance(origin, home))
        return network.nearest(home.latitude, home.longitude, capability)
    return network.nearest(origin.latitude, origin.longitude, capability)


def _distance(a: Facility, b: Facility) -> float:
    return haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)


def sync(
    session: Session,
    task_rows: Sequence[Mapping[str, Any]],
    enrolments: Mapping[uuid.UUID, Mapping[str, Any]],
) -> None:
    """Create the referrals of newly opened referral tasks; revoke those whose task was cancelled."""
    if not task_rows:
        return
    ids = [r["id"] for r in task_rows]
    existing: set[uuid.UUID] = set()
    for part in chunks(ids):
        existing.update(session.scalars(select(Referral.task_id).where(Referral.task_id.in_(part))))
    new = [r for r in task_rows if r["status"] == TaskStatus.OPEN.value and r["id"] not in existing]
    if new:
        _create(session, new, enrolments)
    for r in task_rows:
        if r["id"] not in existing:
            continue
        if r["status"] == TaskStatus.CANCELLED.value:
            _revoke(session, Referral.task_id == r["id"], r["closed_at"] or r["updated_at"])
        elif r["status"] == TaskStatus.DONE.value:  # the result came in: the referral was carried out
            session.execute(
                update(Referral)
                .where(Referral.task_id == r["id"], Referral.status.in_(ROUTED))
                .values(status=ReferralStatus.COMPLETED.value, completed_at=r["closed_at"])
            )


def revoke_void(session: Session, enrolment_ids: Sequence[uuid.UUID]) -> None:
    """Referrals whose task a replay voided."""
    void = select(ProgrammeTask.id).where(
        ProgrammeTask.enrolment_id.in_(enrolment_ids), ProgrammeTask.status == TaskStatus.VOID.value
    )
    _revoke(session, Referral.task_id.in_(void), utcnow())


def _revoke(session: Session, condition: Any, at: datetime) -> None:
    session.execute(
        update(Referral)
        .where(condition, Referral.status.in_(OPEN))
        .values(status=ReferralStatus.REVOKED.value, closed_at=at)
    )


def _create(
    session: Session, tasks: Sequence[Mapping[str, Any]], enrolments: Mapping[uuid.UUID, Mapping[str, Any]]
) -> None:
    network = Network.load(session)
    patients = {t["patient_id"] for t in tasks}
    homes = dict(
        session.execute(select(Patient.id, Patient.home_facility_id).where(Patient.id.in_(patients))).all()
    )
    rows = []
    for task in tasks:
        enrolment = enrolments[task["enrolment_id"]]
        capability = str(task["detail"].get("capability"))
        direction = str(task["detail"].get("direction", "up"))
        origin_id = enrolment["facility_id"]
        if direction == "down":
            origin_id = _last_up_performer(session, task["enrolment_id"]) or origin_id
        origin = network.by_id(origin_id)
        home = network.by_id(homes[task["patient_id"]])
        found = route(network, capability, direction, origin, home) if origin is not None else None
        rows.append(
            {
                "id": referral_id(task["id"]),
                "task_id": task["id"],
                "enrolment_id": task["enrolment_id"],
                "patient_id": task["patient_id"],
                "programme": task["programme"],
                "task_key": task["key"],
                "capability": capability,
                "direction": direction,
                "reason": task["title"],
                "priority": task["priority"],
                "status": (ReferralStatus.REQUESTED if found else ReferralStatus.UNROUTED).value,
                "requester_id": origin_id,
                "performer_id": found.facility.id if found else None,
                "distance_km": round(found.distance_km, 3) if found else None,
                "authored_at": task["opened_at"],
                "updated_at": task["updated_at"],
            }
        )
    stmt = dialect_insert(session.connection(), table(Referral)).on_conflict_do_nothing(index_elements=["id"])
    session.execute(stmt, rows)


def _last_up_performer(session: Session, enrolment_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(
        select(Referral.performer_id)
        .where(
            Referral.enrolment_id == enrolment_id,
            Referral.direction == "up",
            Referral.status.in_([ReferralStatus.ARRIVED.value, ReferralStatus.COMPLETED.value]),
        )
        .order_by(Referral.authored_at.desc())
        .limit(1)
    )


# --- the API side ------------------------------------------------------------------------------


def get_referral(
    session: Session, principal: Principal, referral: uuid.UUID, *, audit: bool = True
) -> Referral:
    found = session.scalar(
        select(Referral).where(Referral.id == referral, patient_in_scope(principal, Referral.patient_id))
    )
    if found is None:
        raise NotFound(f"referral {referral} not found in your facility scope")
    if audit:
        record_access(
            session, principal, "read", "ServiceRequest", [found.patient_id], resource_id=str(found.id)
        )
    return found


def search_referrals(
    session: Session,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    requester_id: uuid.UUID | None = None,
    performer_id: uuid.UUID | None = None,
    status: str | None = None,
    patient_id: uuid.UUID | None = None,
) -> tuple[list[Referral], int]:
    stmt = select(Referral).where(patient_in_scope(principal, Referral.patient_id))
    for column, value in (
        (Referral.requester_id, requester_id),
        (Referral.performer_id, performer_id),
        (Referral.status, status),
        (Referral.patient_id, patient_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(
        session.scalars(stmt.order_by(Referral.authored_at.desc(), Referral.id).limit(limit).offset(offset))
    )
    record_access(
        session, principal, "search", "ServiceRequest", [r.patient_id for r in rows], detail={"total": total}
    )
    return rows, total


def set_status(
    session: Session,
    principal: Principal,
    referral: uuid.UUID,
    status: str,
    *,
    at: datetime,
    note: str | None = None,
) -> Referral:
    """Move a referral on; completed, declined and revoked are fed back to the enrolment."""
    from medloop.programs.service import NewEvent, record_events

    found = get_referral(session, principal, referral, audit=False)
    allowed = NEXT.get(ReferralStatus(found.status), ())
    if status not in allowed:
        raise Conflict(
            f"a {found.status} referral cannot become {status}"
            + (f"; it can become {', '.join(allowed)}" if allowed else "; it is closed")
        )
    if at < found.authored_at:
        raise BadRequest("the time is before the referral was made", field="at")
    found.status = status
    if status == ReferralStatus.ACCEPTED:
        found.accepted_at = at
    elif status == ReferralStatus.ARRIVED:
        found.arrived_at = at
    elif status == ReferralStatus.COMPLETED:
        found.completed_at = at
    else:
        found.closed_at = at
    if note:
        found.outcome_note = note
    session.flush()
    record_access(
        session, principal, "update", "ServiceRequest", [found.patient_id], resource_id=str(found.id)
    )
    if status in (ReferralStatus.COMPLETED, ReferralStatus.DECLINED, ReferralStatus.REVOKED):
        event = NewEvent(
            str(uuid.uuid5(OUTCOME_NAMESPACE, f"{found.id}|{status}")),
            found.patient_id,
            "referral_outcome",
            at,
            {
                "referral_id": str(found.id),
                "capability": found.capability,
                "outcome": status,
                "task": found.task_key,
                "direction": found.direction,
            },
            source="referral",
            enrolment_id=found.enrolment_id,
            facility_id=found.performer_id,
        )
        record_events(session, principal, [event])
    return found


def service_request(r: Referral) -> dict[str, Any]:
    """The referral as a FHIR R4 ServiceRequest."""
    doc: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": str(r.id),
        "identifier": [{"system": TASK_IDENTIFIER_SYSTEM, "value": str(r.task_id)}],
        "basedOn": [{"reference": f"CarePlan/{r.enrolment_id}"}],
        "status": FHIR_STATUS[ReferralStatus(r.status)],
        "intent": "order",
        "priority": "urgent" if r.priority == "urgent" else "routine",
        "category": [{"text": f"{r.programme} referral ({r.direction})"}],
        "code": {
            "coding": [{"system": CAPABILITY_SYSTEM, "code": r.capability}],
            "text": r.reason,
        },
        "reasonCode": [{"text": r.reason}],
        "subject": {"reference": f"Patient/{r.patient_id}"},
        "authoredOn": r.authored_at.isoformat(),
        "requester": {"reference": f"Organization/{r.requester_id}"},
        "extension": [
            {"url": f"{EXT}/referral-direction", "valueCode": r.direction},
            {"url": f"{EXT}/referral-business-status", "valueCode": r.status},
        ],
    }
    if r.performer_id is not None:
        doc["performer"] = [{"reference": f"Organization/{r.performer_id}"}]
    if r.distance_km is not None:
        doc["extension"].append({"url": f"{EXT}/referral-distance-km", "valueDecimal": r.distance_km})
    start = r.accepted_at or r.arrived_at
    end = r.completed_at or r.closed_at
    if start or end:
        doc["occurrencePeriod"] = {
            k: v.isoformat() for k, v in (("start", start), ("end", end)) if v is not None
        }
    if r.outcome_note:
        doc["note"] = [{"text": r.outcome_note}]
    return doc
