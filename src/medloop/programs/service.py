"""Programme use cases: store events, enrol patients, and run the engine over what arrived.

The flow: events are stored first (an id already stored is ignored: re-delivery is a no-op), with
status `pending`. Processing takes the pending events of a batch of patients, enrols patients whose
screening result or device alert a programme enrols on, and hands each enrolment the events that
belong to it. Events later than everything the enrolment has seen are applied on top of its stored
state (`engine.advance`); an event that belongs earlier (a late arrival) makes the enrolment replay
from its seed over every stored event (`engine.run`). Either way the state, the tasks (upserted by
their deterministic ids), the time points, referrals and MDT cases are written back, and each
patient touched leaves an audit record.

Every function that reads or writes patient data takes a `Principal`; queries for patient data go
through `auth.scope.patient_in_scope`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, or_, select, text, update
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal, system_principal
from medloop.auth.scope import patient_in_scope
from medloop.clinical.inputs import limits
from medloop.errors import BadRequest, Conflict, NotFound, Problem
from medloop.people.models import Patient
from medloop.programs import mdt, referrals
from medloop.programs.definitions import (
    COMMON_EVENTS,
    INTERNAL_EVENTS,
    Definition,
    get_definition,
    load_definitions,
)
from medloop.programs.derive import derive
from medloop.programs.engine import Event, Outcome, State, Task, advance, run, seed_event
from medloop.programs.models import (
    Enrolment,
    EnrolmentStatus,
    EventStatus,
    ProgrammeEvent,
    ProgrammeTask,
    TaskStatus,
    Timepoint,
)
from medloop.programs.schemas import VISIT_ID
from medloop.programs.sql import chunks, insert_ignore, table, update_by_key, upsert
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow
from medloop.store.bulk import dialect_insert

# Fixed namespace of task ids (never change it: replays must find the same rows).
TASK_NAMESPACE = uuid.UUID("0b6f2d7e-4c1a-5e39-8d2f-6a7c9e1b3f55")
TICK_NAMESPACE = uuid.UUID("9d3e6b1a-2f47-5c08-b1e6-4a8f0c7d2e93")
TYPED = ("sbp", "dbp", "hba1c_pct", "ldl_mmol")  # payload values copied to columns for KPIs
NUMERIC = (*TYPED, "fpg_mmol", "ogtt_2h_mmol", "random_glucose_mmol", "fev1_fvc_ratio", "weight_kg")
SOURCES = ("screening", "device_alert", "clinician")

E = table(ProgrammeEvent)
EN = table(Enrolment)
T = table(ProgrammeTask)
TP = table(Timepoint)


def task_id(enrolment_id: uuid.UUID, ref: str) -> uuid.UUID:
    return uuid.uuid5(TASK_NAMESPACE, f"{enrolment_id}|{ref}")


def event_kinds() -> frozenset[str]:
    """Every kind an event may have when it arrives from outside."""
    declared = {k for d in load_definitions().values() for k in d.raw.get("events", {})}
    return frozenset((set(COMMON_EVENTS) | declared) - INTERNAL_EVENTS)


# --- storing events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    id: str
    patient_id: uuid.UUID
    kind: str
    effective_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"
    enrolment_id: uuid.UUID | None = None
    facility_id: uuid.UUID | None = None


def _check(event: NewEvent, kinds: frozenset[str]) -> None:
    if event.kind not in kinds:
        raise BadRequest(
            f"event {event.id}: unknown kind {event.kind!r}; known kinds: {', '.join(sorted(kinds))}"
        )
    if event.effective_at.tzinfo is None:
        raise BadRequest(f"event {event.id}: effective time needs a time zone")
    for name in NUMERIC:
        value = event.payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"event {event.id}: {name} must be a number, got {value!r}")


def check_measures(payload: Mapping[str, Any], where: str = "") -> None:
    """Refuses measurements outside the data-quality limits of the clinical code book (values that
    are not numbers are left to the type check)."""
    bounds = limits()
    for name, value in payload.items():
        lim = bounds.get(name)
        if lim is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not lim.min <= value <= lim.max:
            raise BadRequest(
                f"{where}{name} {value:g} is outside the plausible range {lim.min:g}–{lim.max:g}", field=name
            )


def event_rows(events: Sequence[NewEvent], recorded_by: str) -> list[dict[str, Any]]:
    """Validated rows, with the clinical models' results added to the payloads."""
    kinds = event_kinds()
    for event in events:
        _check(event, kinds)
    payloads = [dict(e.payload) for e in events]
    derive([e.kind for e in events], payloads)
    now = utcnow()
    return [
        {
            "id": e.id,
            "patient_id": e.patient_id,
            "enrolment_id": e.enrolment_id,
            "kind": e.kind,
            "effective_at": e.effective_at,
            "recorded_at": now,
            "recorded_by": recorded_by,
            "source": e.source,
            "facility_id": e.facility_id,
            "status": EventStatus.PENDING.value,
            "payload": payload,
            **{c: _number(payload.get(c)) for c in TYPED},
        }
        for e, payload in zip(events, payloads, strict=True)
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def store_events(session: Session, events: Sequence[NewEvent], recorded_by: str) -> list[str]:
    """Store events whose ids are new; returns those ids (a known id is a no-op)."""
    if not events:
        return []
    unique: dict[str, NewEvent] = {}
    for e in events:
        unique.setdefault(e.id, e)  # the first delivery of an id wins
    known: set[str] = set()
    for ids in chunks(list(unique)):
        known.update(session.scalars(select(ProgrammeEvent.id).where(ProgrammeEvent.id.in_(ids))))
    fresh = [e for e in unique.values() if e.id not in known]
    insert_ignore(session.connection(), E, event_rows(fresh, recorded_by), ["id"])
    return [e.id for e in fresh]


def _in_scope(session: Session, principal: Principal, patient_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = list(set(patient_ids))
    found: set[uuid.UUID] = set()
    for part in chunks(wanted):
        found.update(
            session.scalars(
                select(Patient.id).where(Patient.id.in_(part), patient_in_scope(principal, Patient.id))
            )
        )
    return found


def _refusal(event: NewEvent, kinds: frozenset[str], in_scope: set[uuid.UUID]) -> None:
    """Raises why a care-team member may not record `event`: a patient outside their scope, an
    unknown kind, a value of the wrong type or outside the data-quality limits, or a visit whose id
    is not a FHIR id (a visit is also FHIR Encounter/<id>)."""
    if event.patient_id not in in_scope:
        raise NotFound(f"event {event.id}: patient {event.patient_id} not found in your facility scope")
    _check(event, kinds)
    if event.kind == "visit" and not VISIT_ID.match(event.id):
        raise BadRequest(
            f"event {event.id}: a visit's id must be a FHIR id (letters, digits, '-' and '.'; at most 64): "
            "the visit is also FHIR Encounter/<id>"
        )
    check_measures(event.payload, f"event {event.id}: ")


def record_events(session: Session, principal: Principal, events: Sequence[NewEvent]) -> list[str]:
    """Events from a care-team member (API), all or none: the first that may not be recorded (see
    `_refusal`) is raised. Stored, applied, audited. Returns the ids that were new."""
    kinds, in_scope = event_kinds(), _in_scope(session, principal, (e.patient_id for e in events))
    for e in events:
        _refusal(e, kinds, in_scope)
    return _record(session, principal, events)


def _record(session: Session, principal: Principal, events: Sequence[NewEvent]) -> list[str]:
    """Store checked events, audit them and apply them to the patients' programmes."""
    fresh = store_events(session, events, principal.username)
    record_access(
        session,
        principal,
        "create",
        "ProgrammeEvent",
        [e.patient_id for e in events],
        detail={"new": len(fresh)},
    )
    process_patients(session, {e.patient_id for e in events}, principal)
    return fresh


@dataclass(frozen=True)
class Refused:
    index: int  # the event's position in the batch, from 0
    id: str | None  # None when the event has no usable id
    problem: Problem


def record_batch(
    session: Session, principal: Principal, events: Sequence[NewEvent]
) -> tuple[list[str], list[Refused]]:
    """A care-team member's batch (the API), event by event: those that may be recorded are (as
    `record_events`), the others come back with the reason; a bad event never holds up the good
    ones. An event sent at a facility must be at one in the sender's scope. Returns the ids that
    were new, and the refusals in batch order."""
    kinds, in_scope = event_kinds(), _in_scope(session, principal, (e.patient_id for e in events))
    good: list[NewEvent] = []
    refused: list[Refused] = []
    for index, e in enumerate(events):
        try:
            if e.facility_id is not None and not principal.can_see_facility(e.facility_id):
                raise BadRequest(f"event {e.id}: facility {e.facility_id} is outside your facility scope")
            _refusal(e, kinds, in_scope)
        except Problem as problem:
            refused.append(Refused(index, e.id, problem))
            continue
        good.append(e)
    return (_record(session, principal, good) if good else []), refused


def ingest_events(session: Session, events: Sequence[NewEvent], recorded_by: str = "system") -> list[str]:
    """Events from a feed (devices, imports): stored even when the patient is not known yet (they
    wait with status `unknown_patient`). Processing is left to `process_pending`."""
    return store_events(session, events, recorded_by)


# --- enrolling ---------------------------------------------------------------------------------


def _latest_ascvd(
    session: Session, patient_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[float | None, str]]:
    """The latest China-PAR result of each patient (for the worklists' risk order)."""
    ranked = (
        select(
            RiskAssessment.patient_id,
            RiskAssessment.score,
            RiskAssessment.category,
            func.row_number()
            .over(
                partition_by=RiskAssessment.patient_id,
                order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()),
            )
            .label("rn"),
        )
        .where(RiskAssessment.model == "china_par", RiskAssessment.patient_id.in_(patient_ids))
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.patient_id, ranked.c.score, ranked.c.category).where(ranked.c.rn == 1)
    )
    return {r.patient_id: (r.score, r.category) for r in rows}


def _enrolment_row(
    definition: Definition,
    patient_id: uuid.UUID,
    facility_id: uuid.UUID,
    *,
    at: datetime,
    source: str,
    by: str,
    seed: dict[str, Any],
    source_ref: str | None = None,
    practitioner_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "patient_id": patient_id,
        "programme": definition.id,
        "definition_version": definition.version,
        "status": EnrolmentStatus.ACTIVE.value,
        "state": "new",
        "stage": definition.stage("new"),
        "step": 0,
        "source": source,
        "source_ref": source_ref,
        "facility_id": facility_id,
        "practitioner_id": practitioner_id,
        "enrolled_at": at,
        "enrolled_by": by,
        "ended_at": None,
        "end_reason": None,
        "seed": {"source": source, **seed},
        "data": {},
        "next_due_at": None,
        "next_timer_at": None,
        "last_visit_at": None,
        "critical": False,
        "risk_score": None,
        "updated_at": utcnow(),
    }


def _insert_enrolments(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert new enrolments; one that collides with an active enrolment of the same patient and
    programme (e.g. created concurrently) is skipped. Returns the rows inserted."""
    inserted: list[dict[str, Any]] = []
    conn = session.connection()
    for row in rows:
        stmt = (
            dialect_insert(conn, EN)
            .values(row)
            .on_conflict_do_nothing(
                index_elements=["patient_id", "programme"], index_where=text("status = 'active'")
            )
            .returning(EN.c.id)
        )
        if session.execute(stmt).first() is not None:
            inserted.append(row)
    return inserted


def enrol(
    session: Session,
    principal: Principal,
    patient_id: uuid.UUID,
    programme: str,
    *,
    at: datetime | None = None,
    facility_id: uuid.UUID | None = None,
    practitioner_id: uuid.UUID | None = None,
    diagnosed: bool = False,
    reason: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Enrolment:
    """A clinician enrols a patient (one active enrolment per patient and programme)."""
    definition = get_definition(programme)
    if not definition.enrolment.get("clinician", False):
        raise BadRequest(f"programme {programme} does not take clinician enrolments")
    patient = session.scalar(
        select(Patient).where(Patient.id == patient_id, patient_in_scope(principal, Patient.id))
    )
    if patient is None:
        raise NotFound(f"patient {patient_id} not found in your facility scope")
    facility = facility_id or patient.home_facility_id
    if not principal.can_see_facility(facility):
        raise NotFound(f"facility {facility} not found in your facility scope")
    existing = session.scalar(
        select(Enrolment.id).where(
            Enrolment.patient_id == patient_id, Enrolment.programme == programme, Enrolment.status == "active"
        )
    )
    if existing is not None:
        raise Conflict(f"the patient already has an active {programme} enrolment", enrolment_id=str(existing))
    score, category = _latest_ascvd(session, [patient_id]).get(patient_id, (None, None))
    seed = {
        "diagnosed": diagnosed,
        "reason": reason,
        "ascvd_risk": score,
        "ascvd_category": category,
        **(data or {}),
    }
    row = _enrolment_row(
        definition,
        patient_id,
        facility,
        at=at or utcnow(),
        source="clinician",
        by=principal.username,
        seed={k: v for k, v in seed.items() if v is not None},
        practitioner_id=practitioner_id,
    )
    if not _insert_enrolments(session, [row]):
        raise Conflict(f"the patient already has an active {programme} enrolment")
    _apply(session, [row], {}, force_replay={row["id"]})
    record_access(
        session, principal, "create", "ProgrammeEnrolment", [patient_id], resource_id=str(row["id"])
    )
    enrolment = session.get(Enrolment, row["id"], populate_existing=True)
    assert enrolment is not None
    return enrolment


def _covered(spans: Sequence[Mapping[str, Any]], at: datetime) -> bool:
    """One of these enrolments (of one patient in one programme) is active, or was at `at` (it
    ended later)."""
    return any(e["status"] == "active" or e["ended_at"] > at for e in spans)


TRIGGERS = frozenset({"screening_result", "device_alert"})


def _triggered(
    session: Session, pending: Sequence[Row[Any]], enrolments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Enrolments that screening results and device alerts call for: none while the patient is
    enrolled in the programme, or was at the time of the result (its enrolment ended later)."""
    candidates = sorted((r for r in pending if r.kind in TRIGGERS), key=lambda r: (r.effective_at, r.id))
    if not candidates:
        return []
    definitions = load_definitions()
    by_key: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = defaultdict(list)
    for e in enrolments:
        by_key[(e["patient_id"], e["programme"])].append(e)
    wanted: list[tuple[Definition, Row[Any]]] = []
    claimed: set[tuple[uuid.UUID, str]] = set()
    for ev in candidates:
        p = ev.payload
        for d in definitions.values():
            key = (ev.patient_id, d.id)
            if key in claimed or _covered(by_key.get(key, ()), ev.effective_at):
                continue
            hit = (
                ev.kind == "screening_result"
                and (p.get("model"), p.get("category"))
                in {(m, c) for m, cats in d.screening_rules() for c in cats}
            ) or (ev.kind == "device_alert" and p.get("rule_id") in d.alert_rules())
            if hit:
                claimed.add(key)
                wanted.append((d, ev))
    if not wanted:
        return []
    patients = list({ev.patient_id for _, ev in wanted})
    homes = {
        r[0]: r[1]
        for r in session.execute(
            select(Patient.id, Patient.home_facility_id).where(Patient.id.in_(patients))
        ).all()
    }
    ascvd = _latest_ascvd(session, patients)
    rows = []
    for d, ev in wanted:
        score, category = ascvd.get(ev.patient_id, (None, None))
        seed = {
            "ascvd_risk": score,
            "ascvd_category": category,
            "model": ev.payload.get("model"),
            "category": ev.payload.get("category"),
            "rule_id": ev.payload.get("rule_id"),
        }
        source = "screening" if ev.kind == "screening_result" else "device_alert"
        rows.append(
            _enrolment_row(
                d,
                ev.patient_id,
                homes[ev.patient_id],
                at=ev.effective_at,
                source=source,
                by="system",
                seed={k: v for k, v in seed.items() if v is not None},
                source_ref=ev.id,
            )
        )
    return _insert_enrolments(session, rows)


# --- processing --------------------------------------------------------------------------------


@dataclass
class ProcessStats:
    events: int = 0
    unknown_patient: int = 0
    enrolled: int = 0
    enrolments_updated: int = 0
    replays: int = 0

    def add(self, other: ProcessStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def process_pending(
    session: Session, principal: Principal | None = None, *, batch: int = 500
) -> ProcessStats:
    """Apply every pending event, a batch of patients at a time."""
    principal = principal or system_principal()
    total = ProcessStats()
    while True:
        ids = list(
            session.scalars(
                select(ProgrammeEvent.patient_id)
                .where(ProgrammeEvent.status == "pending")
                .distinct()
                .limit(batch)
            )
        )
        if not ids:
            return total
        total.add(process_patients(session, ids, principal))


def retry_unknown_patients(session: Session) -> int:
    """Events kept for patients that did not exist: those whose patient now exists go back to pending."""
    known = select(Patient.id)
    result = session.execute(
        update(ProgrammeEvent)
        .where(ProgrammeEvent.status == "unknown_patient", ProgrammeEvent.patient_id.in_(known))
        .values(status=EventStatus.PENDING.value)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def process_patients(
    session: Session, patient_ids: Iterable[uuid.UUID], principal: Principal
) -> ProcessStats:
    """Apply the pending events of these patients."""
    stats = ProcessStats()
    ids = list(set(patient_ids))
    pending: list[Row[Any]] = []
    for part in chunks(ids):
        pending.extend(
            session.execute(
                select(E)
                .where(E.c.patient_id.in_(part), E.c.status == "pending")
                .order_by(E.c.effective_at, E.c.id)
            ).all()
        )
    if not pending:
        return stats
    known: set[uuid.UUID] = set()
    for part in chunks(list({r.patient_id for r in pending})):
        known.update(session.scalars(select(Patient.id).where(Patient.id.in_(part))))
    unknown = [r.id for r in pending if r.patient_id not in known]
    for part in chunks(unknown):
        session.execute(update(E).where(E.c.id.in_(part)).values(status=EventStatus.UNKNOWN_PATIENT.value))
    stats.unknown_patient = len(unknown)
    pending = [r for r in pending if r.patient_id in known]
    if not pending:
        return stats
    by_patient: dict[uuid.UUID, list[Row[Any]]] = defaultdict(list)
    for r in pending:
        by_patient[r.patient_id].append(r)
    earliest = min(r.effective_at for r in pending)
    enrolments: list[dict[str, Any]] = []
    for part in chunks(list(by_patient)):
        enrolments.extend(
            dict(r._mapping)
            for r in session.execute(
                select(EN)
                .where(
                    EN.c.patient_id.in_(part),
                    or_(EN.c.status == "active", EN.c.ended_at > earliest),
                )
                .order_by(EN.c.id)
                .with_for_update()
            )
        )
    created = _triggered(session, pending, enrolments)
    stats.enrolled = len(created)
    updated, replays = _apply(
        session, [*enrolments, *created], by_patient, force_replay={r["id"] for r in created}
    )
    stats.enrolments_updated, stats.replays = updated, replays
    for part in chunks([r.id for r in pending]):
        session.execute(update(E).where(E.c.id.in_(part)).values(status=EventStatus.PROCESSED.value))
    stats.events = len(pending)
    record_access(
        session,
        principal,
        "update",
        "ProgrammeEnrolment",
        list(by_patient),
        detail={"events": len(pending), "enrolled": len(created)},
    )
    return stats


def _belongs(ev: Row[Any], enrolment: Mapping[str, Any], definition: Definition) -> bool:
    """The event is part of the enrolment's history (events after its end included: the engine
    ignores them, but a replay that undoes the end needs them)."""
    return (
        ev.kind in definition.events
        and ev.effective_at >= enrolment["enrolled_at"]
        and (ev.enrolment_id is None or ev.enrolment_id == enrolment["id"])
    )


def _matters(events: Sequence[Event], enrolment: Mapping[str, Any]) -> bool:
    """New events change an ended enrolment only if one belongs before its end."""
    return enrolment["status"] == "active" or any(e.at < enrolment["ended_at"] for e in events)


def _engine_event(ev: Row[Any]) -> Event:
    return Event(ev.id, ev.kind, ev.effective_at, ev.payload)


def _seed(enrolment: Mapping[str, Any]) -> Event:
    return seed_event(str(enrolment["id"]), enrolment["enrolled_at"], enrolment["seed"])


def _apply(
    session: Session,
    enrolments: Sequence[dict[str, Any]],
    by_patient: Mapping[uuid.UUID, Sequence[Row[Any]]],
    *,
    force_replay: set[uuid.UUID],
) -> tuple[int, int]:
    """Run the engine for each enrolment over its new events and write the results back.
    Returns (enrolments updated, of which replayed)."""
    definitions = load_definitions()
    outcomes: dict[uuid.UUID, Outcome] = {}
    replay: list[dict[str, Any]] = []
    for enr in enrolments:
        d = definitions[enr["programme"]]
        if enr["id"] in force_replay:
            replay.append(enr)
            continue
        mine = [_engine_event(ev) for ev in by_patient.get(enr["patient_id"], ()) if _belongs(ev, enr, d)]
        if not mine or not _matters(mine, enr):
            continue
        outcome = advance(d, State.from_json(enr["data"]), mine)
        if outcome is None:
            replay.append(enr)
        else:
            outcomes[enr["id"]] = outcome
    if replay:
        history: dict[uuid.UUID, list[Row[Any]]] = defaultdict(list)
        for part in chunks(list({e["patient_id"] for e in replay})):
            for ev in session.execute(
                select(E).where(E.c.patient_id.in_(part), E.c.status.in_(["pending", "processed"]))
            ):
                history[ev.patient_id].append(ev)
        for enr in replay:
            d = definitions[enr["programme"]]
            events = [_engine_event(ev) for ev in history[enr["patient_id"]] if _belongs(ev, enr, d)]
            outcomes[enr["id"]] = run(d, _seed(enr), events)
    if outcomes:
        _write(session, [e for e in enrolments if e["id"] in outcomes], outcomes)
    return len(outcomes), len(replay)


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _write(
    session: Session, enrolments: Sequence[dict[str, Any]], outcomes: Mapping[uuid.UUID, Outcome]
) -> None:
    definitions = load_definitions()
    now = utcnow()
    conn = session.connection()
    enrolment_updates: list[dict[str, Any]] = []
    task_rows: list[dict[str, Any]] = []
    timepoint_rows: list[dict[str, Any]] = []
    replayed: list[tuple[uuid.UUID, set[uuid.UUID]]] = []
    for enr in enrolments:
        outcome = outcomes[enr["id"]]
        s, d = outcome.state, definitions[enr["programme"]]
        risk = s.vars.get("ascvd_risk")
        enrolment_updates.append(
            {
                "id": enr["id"],
                "state": s.name,
                "stage": d.stage(s.name),
                "step": s.step,
                "status": (EnrolmentStatus.ENDED if s.ended else EnrolmentStatus.ACTIVE).value,
                "ended_at": s.ended_at,
                "end_reason": s.ended,
                "data": s.to_json(),
                "next_due_at": s.next_due_at if not s.ended else None,
                "next_timer_at": s.next_timer_at,
                "last_visit_at": _parse_time(s.vars.get("last_visit_at")),
                "critical": s.critical,
                "risk_score": float(risk) if isinstance(risk, int | float) else None,
                "updated_at": now,
            }
        )
        task_rows.extend(_task_row(enr, t, now) for t in outcome.tasks.values())
        timepoint_rows.extend(
            {"enrolment_id": enr["id"], "name": name, "programme": enr["programme"], "at": at}
            for name, at in s.timepoints.items()
        )
        if outcome.replayed:
            replayed.append((enr["id"], {task_id(enr["id"], ref) for ref in outcome.tasks}))
    merged = _resolve_revived(session, enrolments, enrolment_updates)
    if merged:  # merged enrolments keep no tasks: the ones they had become void below
        task_rows = [r for r in task_rows if r["enrolment_id"] not in merged]
        timepoint_rows = [r for r in timepoint_rows if r["enrolment_id"] not in merged]
        replayed += [(m, set()) for m in merged]
    # Ends first, then the rest: one active enrolment per patient and programme at every moment.
    update_by_key(conn, EN, [u for u in enrolment_updates if u["status"] != "active"])
    update_by_key(conn, EN, [u for u in enrolment_updates if u["status"] == "active"])
    # Tasks a replay no longer produces are void (kept for the record), with their referrals
    # and MDT cases.
    for enrolment_id, keep in replayed:
        stale = select(T.c.id).where(T.c.enrolment_id == enrolment_id, T.c.status != TaskStatus.VOID.value)
        gone = [i for i in session.scalars(stale) if i not in keep]
        for part in chunks(gone):
            conn.execute(
                update(T).where(T.c.id.in_(part)).values(status=TaskStatus.VOID.value, updated_at=now)
            )
    upsert(conn, T, task_rows, ["id"])
    upsert(conn, TP, timepoint_rows, ["enrolment_id", "name"])
    by_id = {e["id"]: e for e in enrolments}
    referrals.sync(session, [r for r in task_rows if r["kind"] == "referral"], by_id)
    mdt.sync(session, [r for r in task_rows if r["kind"] == "mdt_review"], by_id, definitions)
    if replayed:
        referrals.revoke_void(session, [e for e, _ in replayed])
        mdt.cancel_void(session, [e for e, _ in replayed])


def _resolve_revived(
    session: Session, enrolments: Sequence[Mapping[str, Any]], updates: list[dict[str, Any]]
) -> set[uuid.UUID]:
    """A replay can undo an enrolment's end (a late event changed its course), while the patient
    has meanwhile been enrolled in the programme again (one active enrolment per patient and
    programme). If the newer enrolment was made automatically (a screening result or device alert
    arriving while the old one looked ended), it should never have existed: it is merged back —
    ended at its own start, its tasks void — and its events are already part of the revived
    enrolment's history, so the outcome is the one in-order delivery gives. A newer enrolment made
    by a clinician stands, and the old one stays ended, superseded at the newer one's start.
    Returns the ids of merged enrolments."""
    was = {e["id"]: e for e in enrolments}
    pending = {u["id"]: u for u in updates}
    merged: set[uuid.UUID] = set()
    for u in updates:
        old = was[u["id"]]
        if u["status"] != "active" or old["status"] != "ended":
            continue
        newer = _active_rival(session, old, pending)
        if newer is None:
            continue
        if newer.source in ("screening", "device_alert") and newer.enrolled_at >= old["enrolled_at"]:
            merged.add(newer.id)
            ended = {
                "status": EnrolmentStatus.ENDED.value,
                "ended_at": newer.enrolled_at,
                "end_reason": "merged",
                "next_due_at": None,
                "next_timer_at": None,
                "critical": False,
            }
            if newer.id in pending:
                pending[newer.id].update(ended)
            else:
                session.execute(update(EN).where(EN.c.id == newer.id).values(ended))
        else:
            u.update(status=EnrolmentStatus.ENDED.value, ended_at=newer.enrolled_at, end_reason="superseded")
    return merged


def _active_rival(
    session: Session, old: Mapping[str, Any], pending: Mapping[uuid.UUID, Mapping[str, Any]]
) -> Row[Any, Any, Any, Any] | None:
    """Another enrolment of the patient in the programme that is active once this write is done:
    active in the database and not ended by it, or revived by it too. Of two revived together,
    the older one resolves the pair, so a revived rival must be the newer one."""
    rows = session.execute(
        select(EN.c.id, EN.c.enrolled_at, EN.c.source, EN.c.status).where(
            EN.c.patient_id == old["patient_id"],
            EN.c.programme == old["programme"],
            EN.c.id != old["id"],
        )
    ).all()
    for row in sorted(rows, key=lambda r: r.enrolled_at):
        if row.id not in pending:
            if row.status == EnrolmentStatus.ACTIVE.value:
                return row
        elif (
            pending[row.id]["status"] == EnrolmentStatus.ACTIVE.value
            and row.enrolled_at >= old["enrolled_at"]
        ):
            return row
    return None


def _task_row(enr: Mapping[str, Any], t: Task, now: datetime) -> dict[str, Any]:
    return {
        "id": task_id(enr["id"], t.ref),
        "enrolment_id": enr["id"],
        "patient_id": enr["patient_id"],
        "programme": enr["programme"],
        "ref": t.ref,
        "key": t.key,
        "kind": t.kind,
        "title": t.title,
        "priority": t.priority,
        "status": t.status,
        "due_at": t.due_at,
        "opened_at": t.opened_at,
        "closed_at": t.closed_at,
        "facility_id": enr["facility_id"],
        "event_id": t.event_id,
        "detail": dict(t.detail),
        "updated_at": now,
    }


# --- time passing ------------------------------------------------------------------------------


def advance_time(session: Session, until: datetime, *, batch: int = 1000, rounds: int = 50) -> int:
    """Store a `tick` at the due time of every timer due by `until` and apply them. Returns the
    number of ticks. Ticks have deterministic ids: running this twice adds nothing."""
    ticks = 0
    for _ in range(rounds):
        rows = session.execute(
            select(EN.c.id, EN.c.patient_id, EN.c.next_timer_at)
            .where(EN.c.status == "active", EN.c.next_timer_at <= until)
            .limit(batch)
        ).all()
        events = [
            NewEvent(
                id=str(uuid.uuid5(TICK_NAMESPACE, f"{r.id}|{r.next_timer_at.isoformat()}")),
                patient_id=r.patient_id,
                kind="tick",
                effective_at=r.next_timer_at,
                source="system",
                enrolment_id=r.id,
            )
            for r in rows
        ]
        fresh = store_events(session, events, "system")
        if not fresh:
            return ticks
        ticks += len(fresh)
        process_patients(session, {e.patient_id for e in events}, system_principal())
    return ticks


# --- reading (scoped, audited) -----------------------------------------------------------------


def get_enrolment(
    session: Session, principal: Principal, enrolment_id: uuid.UUID, *, audit: bool = True
) -> Enrolment:
    enrolment = session.scalar(
        select(Enrolment).where(
            Enrolment.id == enrolment_id, patient_in_scope(principal, Enrolment.patient_id)
        )
    )
    if enrolment is None:
        raise NotFound(f"enrolment {enrolment_id} not found in your facility scope")
    if audit:
        record_access(
            session,
            principal,
            "read",
            "ProgrammeEnrolment",
            [enrolment.patient_id],
            resource_id=str(enrolment_id),
        )
    return enrolment


def enrolment_tasks(
    session: Session, enrolment_id: uuid.UUID, *, include_void: bool = False
) -> list[ProgrammeTask]:
    stmt = select(ProgrammeTask).where(ProgrammeTask.enrolment_id == enrolment_id)
    if not include_void:
        stmt = stmt.where(ProgrammeTask.status != TaskStatus.VOID.value)
    return list(session.scalars(stmt.order_by(ProgrammeTask.opened_at, ProgrammeTask.ref)))


def search_enrolments(
    session: Session,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    patient_id: uuid.UUID | None = None,
    programme: str | None = None,
    facility_id: uuid.UUID | None = None,
    status: str | None = None,
    stage: str | None = None,
) -> tuple[list[Enrolment], int]:
    stmt = select(Enrolment).where(patient_in_scope(principal, Enrolment.patient_id))
    for column, value in (
        (Enrolment.patient_id, patient_id),
        (Enrolment.programme, programme),
        (Enrolment.facility_id, facility_id),
        (Enrolment.status, status),
        (Enrolment.stage, stage),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(
        session.scalars(stmt.order_by(Enrolment.enrolled_at.desc(), Enrolment.id).limit(limit).offset(offset))
    )
    record_access(
        session,
        principal,
        "search",
        "ProgrammeEnrolment",
        [r.patient_id for r in rows],
        detail={"total": total},
    )
    return rows, total


def search_tasks(
    session: Session,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    facility_id: uuid.UUID | None = None,
    status: str | None = "open",
    kind: str | None = None,
    priority: str | None = None,
    programme: str | None = None,
) -> tuple[list[ProgrammeTask], int]:
    stmt = select(ProgrammeTask).where(
        patient_in_scope(principal, ProgrammeTask.patient_id), ProgrammeTask.status != TaskStatus.VOID.value
    )
    if facility_id is not None:
        if not principal.can_see_facility(facility_id):
            raise NotFound(f"facility {facility_id} not found in your facility scope")
        stmt = stmt.where(ProgrammeTask.facility_id == facility_id)
    for column, value in (
        (ProgrammeTask.status, status),
        (ProgrammeTask.kind, kind),
        (ProgrammeTask.priority, priority),
        (ProgrammeTask.programme, programme),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = (ProgrammeTask.priority == "urgent").desc(), ProgrammeTask.due_at, ProgrammeTask.id
    rows = list(session.scalars(stmt.order_by(*order).limit(limit).offset(offset)))
    record_access(
        session, principal, "search", "ProgrammeTask", [r.patient_id for r in rows], detail={"total": total}
    )
    return rows, total


def enrolment_events(session: Session, enrolment: Enrolment) -> list[ProgrammeEvent]:
    definition = get_definition(enrolment.programme)
    rows = session.scalars(
        select(ProgrammeEvent)
        .where(
            ProgrammeEvent.patient_id == enrolment.patient_id,
            ProgrammeEvent.effective_at >= enrolment.enrolled_at,
            ProgrammeEvent.kind.in_(definition.events),
            or_(ProgrammeEvent.enrolment_id.is_(None), ProgrammeEvent.enrolment_id == enrolment.id),
        )
        .order_by(ProgrammeEvent.effective_at, ProgrammeEvent.id)
    )
    return list(rows)


# --- care-team actions that are events ---------------------------------------------------------


def _event_id(given: str | None) -> str:
    return given or str(uuid.uuid4())


def complete_task(
    session: Session,
    principal: Principal,
    task_row_id: uuid.UUID,
    *,
    status: str,
    at: datetime,
    event_id: str | None,
) -> ProgrammeTask:
    task = session.scalar(
        select(ProgrammeTask).where(
            ProgrammeTask.id == task_row_id, patient_in_scope(principal, ProgrammeTask.patient_id)
        )
    )
    if task is None:
        raise NotFound(f"task {task_row_id} not found in your facility scope")
    if task.status != TaskStatus.OPEN.value:
        raise Conflict(f"task {task_row_id} is {task.status}, not open")
    record_events(
        session,
        principal,
        [
            NewEvent(
                _event_id(event_id),
                task.patient_id,
                "task_completed",
                at,
                {"task": task.key, "status": status},
                enrolment_id=task.enrolment_id,
            )
        ],
    )
    session.refresh(task)
    return task


def record_call_outcome(
    session: Session,
    principal: Principal,
    enrolment_id: uuid.UUID,
    *,
    outcome: str,
    at: datetime,
    rescheduled_to: datetime | None = None,
    note: str | None = None,
    event_id: str | None = None,
) -> Enrolment:
    """A call from the worklist. Reached and rescheduled: the follow-up moves to the new date; not
    reached: counted; moved away or died: every active enrolment of the patient ends (and a death
    is recorded on the patient)."""
    enrolment = get_enrolment(session, principal, enrolment_id, audit=False)
    if outcome == "reached_rescheduled" and rescheduled_to is None:
        raise BadRequest("a rescheduled call needs 'rescheduled_to'", field="rescheduled_to")
    everyone = outcome in ("moved_away", "died")
    payload: dict[str, Any] = {"outcome": outcome, "note": note}
    if rescheduled_to is not None:
        payload["rescheduled_to"] = rescheduled_to.isoformat()
    record_events(
        session,
        principal,
        [
            NewEvent(
                _event_id(event_id),
                enrolment.patient_id,
                "call_outcome",
                at,
                {k: v for k, v in payload.items() if v is not None},
                enrolment_id=None if everyone else enrolment.id,
            )
        ],
    )
    if outcome == "died":
        patient = session.get(Patient, enrolment.patient_id)
        if patient is not None and not patient.deceased:
            patient.deceased = True
            record_access(
                session, principal, "update", "Patient", [patient.id], detail={"fields": ["deceased"]}
            )
    session.refresh(enrolment)
    return enrolment


def record_visit(
    session: Session,
    principal: Principal,
    *,
    patient_id: uuid.UUID,
    facility_id: uuid.UUID,
    at: datetime,
    measures: Mapping[str, float],
    medication_changes: Sequence[Mapping[str, Any]] = (),
    notes: str | None = None,
    event_id: str | None = None,
) -> tuple[str, bool, list[Enrolment]]:
    """A clinic visit (BP, glucose, HbA1c, LDL-C, weight, medication changes, notes) is an event for
    every programme the patient is in. Values outside the data-quality limits of the clinical code
    book are refused. Returns the event id, whether it was new, and the patient's enrolments."""
    if not principal.can_see_facility(facility_id):
        raise NotFound(f"facility {facility_id} not found in your facility scope")
    check_measures(measures)
    payload: dict[str, Any] = dict(measures)
    if medication_changes:
        payload["medication_changes"] = [dict(m) for m in medication_changes]
    if notes:
        payload["notes"] = notes
    new_id = _event_id(event_id)
    event = NewEvent(new_id, patient_id, "visit", at, payload, source="api", facility_id=facility_id)
    fresh = record_events(session, principal, [event])
    enrolments = list(
        session.scalars(
            select(Enrolment)
            .where(Enrolment.patient_id == patient_id)
            .order_by(Enrolment.enrolled_at, Enrolment.id)
            .execution_options(populate_existing=True)
        )
    )
    return new_id, bool(fresh), enrolments
