"""The programme tables as FHIR: CarePlan ↔ enrolment, Task ↔ programme task, ServiceRequest ↔
referral, Encounter ↔ visit event. Every write goes through `medloop.programs` (the same use cases
the programmes REST API calls, checked with its request schemas), so the pathway engine sees it.

- **CarePlan** = `programme_enrolment`. The programme is `instantiatesCanonical`
  (`…/PlanDefinition/<programme>|<version>`) and `category` (`…/CodeSystem/programme`); the
  engine's stage, state and protocol step are extensions. Create = enrol (`service.enrol`).
- **Task** = `programme_task`, `basedOn` its CarePlan, `owner` the care team's facility, the due
  date `restriction.period.end`. Update moves a ready (open) task to completed or cancelled
  (`service.complete_task`). An update of a ready task that carries a call outcome in `output`
  (a worklist call about it) records the call on the enrolment (`service.record_call_outcome`)
  and leaves the status to the engine: a rescheduled follow-up is due later, moved away or died
  ends the enrolment.
- **ServiceRequest** = `programme_referral`, rendered by `programs.referrals.service_request`
  (the REST API's ServiceRequest view is the same). Update moves the business status on
  (`referrals.set_status`); the engine creates referrals, so there is no create.
- **Encounter** = a `visit` event. Its id is the event id; the measurements are contained
  Observations that reference the Encounter (`"encounter": {"reference": "#"}`): one blood
  pressure panel (85354-9 with 8480-6 and 8462-4) and one Observation per other measurement.
  Create = `service.record_visit`. Events are immutable: no update or delete.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, and_, or_, select

from medloop.clinical.codes import LOINC_SYSTEM, UCUM_SYSTEM, Measure, codebook
from medloop.errors import BadRequest, Conflict, NotFound, Unprocessable, error_summary
from medloop.fhir.common import (
    CS,
    OBSERVATION_CATEGORY,
    RISK_SCORE_EXTENSION,
    SD,
    SID,
    Ctx,
    code_in,
    codings,
    first,
    instant,
    meta,
    parse_uuid,
    ref,
    reference_id,
    version_of,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written, require_patient
from medloop.fhir.mapping.observation import CATEGORY_DISPLAY, category_of
from medloop.fhir.mapping.patient import etag_matches
from medloop.fhir.search import Param, date_param, enum_token, reference_param, token_param
from medloop.people.models import Practitioner
from medloop.programs import referrals, schemas, service
from medloop.programs.api import READERS, WRITERS
from medloop.programs.definitions import get_definition, load_definitions
from medloop.programs.models import (
    Enrolment,
    EnrolmentStatus,
    ProgrammeEvent,
    ProgrammeTask,
    Referral,
    ReferralStatus,
    TaskStatus,
)
from medloop.programs.schemas import (
    CallOutcomeIn,
    EnrolmentIn,
    ReferralStatusIn,
    TaskCompleteIn,
    VisitIn,
)
from medloop.store.base import utcnow

PLAN_DEFINITION = "https://medloop.dev/fhir/PlanDefinition"  # + /<programme>|<version>
PROGRAMME_SYSTEM = f"{CS}/programme"
TASK_KIND_SYSTEM = f"{CS}/programme-task-kind"
TASK_KEY_SYSTEM = f"{CS}/programme-task"
TASK_OUTPUT_SYSTEM = f"{CS}/programme-task-output"  # call-outcome, rescheduled-to
EVENT_SYSTEM = f"{SID}/programme-event"
EVENT_KIND_SYSTEM = f"{CS}/programme-event-kind"
VISIT_MEASURE_SYSTEM = f"{CS}/visit-measure"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
STAGE_EXTENSION = f"{SD}/programme-stage"
STATE_EXTENSION = f"{SD}/programme-state"
STEP_EXTENSION = f"{SD}/programme-step"
SOURCE_EXTENSION = f"{SD}/enrolment-source"
END_REASON_EXTENSION = f"{SD}/enrolment-end-reason"
NEXT_DUE_EXTENSION = f"{SD}/programme-next-due"
DIAGNOSED_EXTENSION = f"{SD}/enrolment-diagnosed"
DATA_EXTENSION = f"{SD}/enrolment-data"  # sub-extensions: url = name, value[x] = a scalar
BUSINESS_STATUS_EXTENSION = f"{referrals.EXT}/referral-business-status"

# CarePlan.status of an ended enrolment, by end reason; any other reason (a terminal state of the
# pathway, e.g. not_hypertensive, discharged) is `completed`. Search reads the same table.
END_STATUS = {
    "merged": "entered-in-error",  # a duplicate, merged into the older enrolment
    "superseded": "revoked",
    "moved_away": "revoked",
    "died": "revoked",
}
TASK_STATUS = {
    TaskStatus.OPEN.value: "ready",
    TaskStatus.DONE.value: "completed",
    TaskStatus.CANCELLED.value: "cancelled",
    TaskStatus.VOID.value: "entered-in-error",  # a replay no longer produces it
}
# Visit measurements (payload name) with a LOINC code in the code book (clinical/data/codes.yaml),
# by code-book measure name; systolic and diastolic are served as one blood-pressure panel.
CODED_MEASURES = {
    "sbp": "systolic_bp",
    "dbp": "diastolic_bp",
    "heart_rate": "heart_rate",
    "weight_kg": "body_weight",
    "fpg_mmol": "glucose",
    "hba1c_pct": "hba1c",
}
# Those the code book has no code for: medloop's own code system, with their unit.
UNCODED_MEASURES = {"random_glucose_mmol": "mmol/L", "ldl_mmol": "mmol/L"}
BP_PANEL = "bp_panel"
CALL_NAMESPACE = uuid.UUID("5f0c2a8e-91d3-5b47-a6e2-7c1d4b9f0e36")  # ids of calls recorded through Task
M = TypeVar("M", bound=BaseModel)
# Where the fields of the REST request schemas come from in the FHIR resources (for errors).
CAREPLAN_PATHS = {
    "enrolled_at": "CarePlan.period.start",
    "reason": "CarePlan.description",
    "diagnosed": f"CarePlan.extension({DIAGNOSED_EXTENSION})",
    "data": f"CarePlan.extension({DATA_EXTENSION})",
}
TASK_PATHS = {
    "at": "Task.executionPeriod.end",
    "status": "Task.status",
    "outcome": "Task.output(call-outcome)",
    "rescheduled_to": "Task.output(rescheduled-to)",
    "note": "Task.note",
}
REFERRAL_PATHS = {
    "status": f"ServiceRequest.extension({BUSINESS_STATUS_EXTENSION})",
    "at": "ServiceRequest.occurrencePeriod",
    "note": "ServiceRequest.note",
}
ENCOUNTER_PATHS = {"effective_at": "Encounter.period.start", "id": "Encounter.identifier"}
FHIR_ID = schemas.VISIT_ID
# Visits stored before REST visit ids had to be FHIR ids may hold _ and : (served as they are).
EVENT_ID = re.compile(schemas.EVENT_ID)


# --- shared ------------------------------------------------------------------------------------


@contextmanager
def business_rules() -> Iterator[None]:
    """The programme services answer a broken business rule with 400 (REST); FHIR says 422."""
    try:
        yield
    except BadRequest as exc:
        raise Unprocessable(exc.detail) from None


def checked(model: type[M], paths: Mapping[str, str], **fields: Any) -> M:
    """The programmes REST API's request schema, applied to what a FHIR resource says; `paths`
    names the FHIR element each field came from (for the error)."""
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        errors = [
            {"loc": paths.get(str(e["loc"][0]), str(e["loc"][0])) if e["loc"] else "", "msg": e["msg"]}
            for e in exc.errors()
        ]
        summary = error_summary(errors, 3)
        raise Unprocessable(
            f"{model.__name__.removesuffix('In')} refused: {summary}", errors=errors
        ) from None


def extension(resource: Mapping[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension") or [] if e.get("url") == url), None)


def scalar(ext: Mapping[str, Any]) -> Any:
    for key in ("valueString", "valueCode", "valueBoolean", "valueInteger", "valueDecimal"):
        if key in ext:
            return ext[key]
    return None


def facility_in_scope(ctx: Ctx, value: Any, where: str) -> uuid.UUID:
    facility = reference_id(value, "Organization", where)
    if not ctx.principal.can_see_facility(facility):
        raise Unprocessable(f"{where}: Organization/{facility} is not a facility in your scope")
    return facility


def reread(ctx: Ctx, handler: TableHandler, rid: Any) -> Found:
    """The row as it is after a write (the engine writes through Core statements)."""
    stmt = handler.base(ctx).where(type(handler).id_column == rid)
    row = ctx.session.execute(stmt.execution_options(populate_existing=True)).first()
    assert row is not None
    return handler.hydrate(ctx, [row])[0]


def without_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None and v != [] and v != {}}


# --- CarePlan ↔ enrolment ---------------------------------------------------------------------


def careplan_status(status: str, end_reason: str | None) -> str:
    if status == EnrolmentStatus.ACTIVE.value:
        return "active"
    return END_STATUS.get(end_reason or "", "completed")


def _careplan_status_match(_system: str | None, code: str) -> ColumnElement[bool] | None:
    if code == "active":
        return Enrolment.status == EnrolmentStatus.ACTIVE.value
    ended = Enrolment.status == EnrolmentStatus.ENDED.value
    if code == "completed":
        listed = Enrolment.end_reason.not_in(list(END_STATUS))
        return and_(ended, or_(Enrolment.end_reason.is_(None), listed))
    reasons = [reason for reason, fhir in END_STATUS.items() if fhir == code]
    return and_(ended, Enrolment.end_reason.in_(reasons)) if reasons else None


def _programme_match(system: str | None, code: str) -> ColumnElement[bool] | None:
    return Enrolment.programme == code if system in (None, "", PROGRAMME_SYSTEM) else None


def careplan_to_fhir(e: Enrolment) -> dict[str, Any]:
    definition = load_definitions().get(e.programme)
    title = definition.title if definition is not None else e.programme
    extensions: list[dict[str, Any]] = [
        {"url": STAGE_EXTENSION, "valueCode": e.stage},
        {"url": STATE_EXTENSION, "valueCode": e.state},
        {"url": STEP_EXTENSION, "valueInteger": e.step},
        {"url": SOURCE_EXTENSION, "valueCode": e.source},
    ]
    if e.end_reason:
        extensions.append({"url": END_REASON_EXTENSION, "valueCode": e.end_reason})
    if e.next_due_at is not None:
        extensions.append({"url": NEXT_DUE_EXTENSION, "valueDateTime": instant(e.next_due_at)})
    if e.risk_score is not None:
        extensions.append({"url": RISK_SCORE_EXTENSION, "valueDecimal": e.risk_score})
    return without_none(
        {
            "resourceType": "CarePlan",
            "id": str(e.id),
            "meta": meta(version_of(e.updated_at), e.updated_at),
            "extension": extensions,
            "instantiatesCanonical": [f"{PLAN_DEFINITION}/{e.programme}|{e.definition_version}"],
            "status": careplan_status(e.status, e.end_reason),
            "intent": "plan",
            "category": [{"coding": [{"system": PROGRAMME_SYSTEM, "code": e.programme, "display": title}]}],
            "title": title,
            "subject": ref("Patient", e.patient_id),
            "period": without_none({"start": instant(e.enrolled_at), "end": instant(e.ended_at)}),
            "created": instant(e.enrolled_at),
            "author": ref("Organization", e.facility_id),
            "contributor": [ref("Practitioner", e.practitioner_id)] if e.practitioner_id else None,
        }
    )


class CarePlanHandler(TableHandler):
    type = "CarePlan"
    compartment = True
    interactions = ("read", "search-type", "create")
    read_roles = READERS
    write_roles = WRITERS
    includes: ClassVar[dict[str, str]] = {"subject": "Patient", "patient": "Patient"}
    id_column = Enrolment.id
    patient_column = Enrolment.patient_id
    updated_column = Enrolment.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "date": Enrolment.enrolled_at,
        "_lastUpdated": Enrolment.updated_at,
    }
    doc = "Programme enrolments (create = enrol the patient; the pathway engine runs the plan)."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "patient": reference_param("patient", Enrolment.patient_id, "Patient", "The patient"),
            "subject": reference_param("subject", Enrolment.patient_id, "Patient", "The patient"),
            "status": token_param(
                "status", "active | completed | revoked | entered-in-error", _careplan_status_match
            ),
            "category": token_param(
                "category", "The programme (hypertension, diabetes, ...)", _programme_match
            ),
            "date": date_param("date", Enrolment.enrolled_at, "When enrolled (period.start)"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return self.scoped(ctx, select(Enrolment))

    def to_fhir(self, row: Any) -> Found:
        e: Enrolment = row[0]
        return Found(careplan_to_fhir(e), e.patient_id)

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        patient_id = reference_id(resource.get("subject"), "Patient", "CarePlan.subject")
        require_patient(ctx, patient_id, "CarePlan.subject")
        if resource.get("status") != "active" or resource.get("intent") != "plan":
            raise Unprocessable(
                "a CarePlan is created active with intent plan: creating one enrols the patient"
            )
        facility = None
        if "author" in resource:
            facility = facility_in_scope(ctx, resource["author"], "CarePlan.author")
        diagnosed = extension(resource, DIAGNOSED_EXTENSION)
        data = extension(resource, DATA_EXTENSION)
        wanted = checked(
            EnrolmentIn,
            CAREPLAN_PATHS,
            patient_id=patient_id,
            programme=self._programme(resource),
            facility_id=facility,
            practitioner_id=self._practitioner(ctx, resource),
            enrolled_at=(resource.get("period") or {}).get("start"),
            diagnosed=scalar(diagnosed) if diagnosed else None,
            reason=resource.get("description"),
            data={str(x.get("url")): scalar(x) for x in data.get("extension") or []} if data else None,
        )
        with business_rules():
            enrolment = service.enrol(
                ctx.session,
                ctx.principal,
                wanted.patient_id,
                wanted.programme,
                at=wanted.enrolled_at,
                facility_id=wanted.facility_id,
                practitioner_id=wanted.practitioner_id,
                diagnosed=wanted.diagnosed,
                reason=wanted.reason,
                data=wanted.data,
            )
        return Written(Found(careplan_to_fhir(enrolment), enrolment.patient_id), True)

    @staticmethod
    def _programme(resource: Mapping[str, Any]) -> str:
        prefix = f"{PLAN_DEFINITION}/"
        canonical = [
            str(c).removeprefix(prefix).partition("|")
            for c in resource.get("instantiatesCanonical") or []
            if str(c).startswith(prefix)
        ]
        coded = [code_in(c, PROGRAMME_SYSTEM) for c in resource.get("category") or []]
        named = {name for name, _, _ in canonical} | {c for c in coded if c}
        if len(named) != 1:
            raise Unprocessable(
                f"CarePlan must name one programme: instantiatesCanonical {prefix}<programme>|<version> "
                f"or a category coded in {PROGRAMME_SYSTEM}"
                + (f" (it names {', '.join(sorted(named))})" if named else "")
            )
        programme = named.pop()
        try:
            definition = get_definition(programme)
        except NotFound as exc:
            raise Unprocessable(exc.detail) from None
        for _, _, version in canonical:
            if version and version != str(definition.version):
                raise Unprocessable(
                    f"programme {programme} is at version {definition.version}, not {version}: "
                    "enrolments start on the current version"
                )
        return programme

    @staticmethod
    def _practitioner(ctx: Ctx, resource: Mapping[str, Any]) -> uuid.UUID | None:
        for contributor in resource.get("contributor") or []:
            if str(contributor.get("reference", "")).rpartition("/")[0].endswith("Practitioner"):
                found = reference_id(contributor, "Practitioner", "CarePlan.contributor")
                if ctx.session.get(Practitioner, found) is None:
                    raise Unprocessable(f"CarePlan.contributor: Practitioner/{found} does not exist")
                return found
        return None


# --- Task ↔ programme task --------------------------------------------------------------------


def _task_code_match(system: str | None, code: str) -> ColumnElement[bool] | None:
    if system == TASK_KIND_SYSTEM:
        return ProgrammeTask.kind == code
    if system == TASK_KEY_SYSTEM:
        return ProgrammeTask.key == code
    return or_(ProgrammeTask.kind == code, ProgrammeTask.key == code) if system in (None, "") else None


def task_to_fhir(t: ProgrammeTask) -> dict[str, Any]:
    return without_none(
        {
            "resourceType": "Task",
            "id": str(t.id),
            "meta": meta(version_of(t.updated_at), t.updated_at),
            "basedOn": [ref("CarePlan", t.enrolment_id)],
            "status": TASK_STATUS[t.status],
            "intent": "plan",
            "priority": t.priority,
            "code": {
                "coding": [
                    {"system": TASK_KIND_SYSTEM, "code": t.kind},
                    {"system": TASK_KEY_SYSTEM, "code": t.key},
                ],
                "text": t.title,
            },
            "description": t.title,
            "for": ref("Patient", t.patient_id),
            "executionPeriod": {"end": instant(t.closed_at)} if t.closed_at else None,
            "authoredOn": instant(t.opened_at),
            "lastModified": instant(t.updated_at),
            "owner": ref("Organization", t.facility_id),
            "restriction": {"period": {"end": instant(t.due_at)}},
        }
    )


class TaskHandler(TableHandler):
    type = "Task"
    compartment = True
    interactions = ("read", "search-type", "update")
    read_roles = READERS
    write_roles = WRITERS
    includes: ClassVar[dict[str, str]] = {"patient": "Patient", "subject": "Patient"}
    id_column = ProgrammeTask.id
    patient_column = ProgrammeTask.patient_id
    updated_column = ProgrammeTask.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "date": ProgrammeTask.due_at,
        "authored-on": ProgrammeTask.opened_at,
        "_lastUpdated": ProgrammeTask.updated_at,
    }
    doc = (
        "Programme tasks (opened by the pathway engine). Update: a ready task becomes completed or "
        "cancelled; a call outcome in output records a worklist call about the task."
    )

    def params(self) -> dict[str, Param]:
        inverse = {fhir: stored for stored, fhir in TASK_STATUS.items()}
        return {
            **self.common_params(),
            "patient": reference_param("patient", ProgrammeTask.patient_id, "Patient", "The patient (for)"),
            "subject": reference_param("subject", ProgrammeTask.patient_id, "Patient", "The patient (for)"),
            "status": enum_token(
                "status", ProgrammeTask.status, "ready | completed | cancelled | entered-in-error", inverse
            ),
            "code": token_param("code", "Task kind or programme task key", _task_code_match),
            "priority": enum_token("priority", ProgrammeTask.priority, "routine | urgent"),
            "owner": reference_param("owner", ProgrammeTask.facility_id, "Organization", "The care team"),
            "based-on": reference_param("based-on", ProgrammeTask.enrolment_id, "CarePlan", "The enrolment"),
            "date": date_param("date", ProgrammeTask.due_at, "When due (restriction.period.end)"),
            "authored-on": date_param("authored-on", ProgrammeTask.opened_at, "When opened"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return self.scoped(ctx, select(ProgrammeTask))

    def to_fhir(self, row: Any) -> Found:
        t: ProgrammeTask = row[0]
        return Found(task_to_fhir(t), t.patient_id)

    def update(self, ctx: Ctx, rid: str, resource: dict[str, Any], if_match: str | None) -> Written:
        task = ctx.session.scalar(self.base(ctx).where(ProgrammeTask.id == self.parse_id(rid)))
        if task is None:
            raise NotFound(f"Task/{rid} not found in your facility scope")
        etag_matches(if_match, version_of(task.updated_at))
        status, current = resource.get("status"), TASK_STATUS[task.status]
        outcome = next(
            (
                o.get("valueCode")
                for o in resource.get("output") or []
                if code_in(o.get("type"), TASK_OUTPUT_SYSTEM) == "call-outcome"
            ),
            None,
        )
        if outcome is None and status == current:
            return Written(self.to_fhir((task,)), False)
        if task.status != TaskStatus.OPEN.value:
            raise Conflict(f"Task/{rid} is {current}; only a ready task can change")
        with business_rules():
            if outcome is not None:
                self._call(ctx, task, resource, outcome)
            elif status in ("completed", "cancelled"):
                done = checked(
                    TaskCompleteIn,
                    TASK_PATHS,
                    status="done" if status == "completed" else "cancelled",
                    at=(resource.get("executionPeriod") or {}).get("end"),
                )
                service.complete_task(
                    ctx.session,
                    ctx.principal,
                    task.id,
                    status=done.status,
                    at=done.at or utcnow(),
                    event_id=None,
                )
            else:
                raise Unprocessable("Task.status of a ready task can become completed or cancelled")
        return Written(reread(ctx, self, task.id), False)

    @staticmethod
    def _call(ctx: Ctx, task: ProgrammeTask, resource: Mapping[str, Any], outcome: Any) -> None:
        """A call about this task (from the worklist): recorded on the enrolment; the engine moves
        the tasks on (a rescheduled follow-up is due later, call_patient tasks close, ...)."""
        if resource.get("status") != TASK_STATUS[task.status]:
            raise Unprocessable(
                "with a call outcome, leave Task.status as it is: the engine moves the tasks on"
            )
        rescheduled = next(
            (
                o.get("valueDateTime")
                for o in resource.get("output") or []
                if code_in(o.get("type"), TASK_OUTPUT_SYSTEM) == "rescheduled-to"
            ),
            None,
        )
        call = checked(
            CallOutcomeIn,
            TASK_PATHS,
            outcome=outcome,
            rescheduled_to=rescheduled,
            note=(first(resource.get("note")) or {}).get("text"),
        )
        # the same call about the same version of the task is one event (a retried PUT is a no-op)
        event_id = uuid.uuid5(CALL_NAMESPACE, f"{task.id}|{version_of(task.updated_at)}|{call.outcome}")
        service.record_call_outcome(
            ctx.session,
            ctx.principal,
            task.enrolment_id,
            outcome=call.outcome,
            at=utcnow(),
            rescheduled_to=call.rescheduled_to,
            note=call.note,
            event_id=str(event_id),
        )


# --- ServiceRequest ↔ referral ----------------------------------------------------------------


def _referral_status_match(_system: str | None, code: str) -> ColumnElement[bool] | None:
    stored = [s.value for s, fhir in referrals.FHIR_STATUS.items() if fhir == code]
    return Referral.status.in_(stored) if stored else None


def _capability_match(system: str | None, code: str) -> ColumnElement[bool] | None:
    return Referral.capability == code if system in (None, "", referrals.CAPABILITY_SYSTEM) else None


def _task_identifier_match(system: str | None, code: str) -> ColumnElement[bool] | None:
    found = parse_uuid(code)
    if found is None or system not in (None, "", referrals.TASK_IDENTIFIER_SYSTEM):
        return None
    return Referral.task_id == found


class ServiceRequestHandler(TableHandler):
    type = "ServiceRequest"
    compartment = True
    interactions = ("read", "search-type", "update")
    read_roles = READERS
    write_roles = WRITERS
    includes: ClassVar[dict[str, str]] = {
        "subject": "Patient",
        "patient": "Patient",
        "requester": "Organization",
    }
    id_column = Referral.id
    patient_column = Referral.patient_id
    updated_column = Referral.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "date": Referral.authored_at,
        "authored": Referral.authored_at,
        "_lastUpdated": Referral.updated_at,
    }
    doc = (
        "Referrals (opened by the pathway engine, routed through the care network). Update moves the "
        "business status on (extension referral-business-status, or status completed | revoked)."
    )

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "patient": reference_param("patient", Referral.patient_id, "Patient", "The patient"),
            "subject": reference_param("subject", Referral.patient_id, "Patient", "The patient"),
            "status": token_param("status", "draft | active | completed | revoked", _referral_status_match),
            "performer": reference_param("performer", Referral.performer_id, "Organization", "Referred to"),
            "requester": reference_param("requester", Referral.requester_id, "Organization", "Referred from"),
            "based-on": reference_param("based-on", Referral.enrolment_id, "CarePlan", "The enrolment"),
            "code": token_param("code", "The capability referred for", _capability_match),
            "priority": enum_token("priority", Referral.priority, "routine | urgent"),
            "identifier": token_param("identifier", "The programme task's id", _task_identifier_match),
            "date": date_param("date", Referral.authored_at, "When referred (authoredOn)"),
            "authored": date_param("authored", Referral.authored_at, "When referred (authoredOn)"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return self.scoped(ctx, select(Referral))

    def to_fhir(self, row: Any) -> Found:
        r: Referral = row[0]
        doc = referrals.service_request(r)
        return Found({**doc, "meta": meta(version_of(r.updated_at), r.updated_at)}, r.patient_id)

    def update(self, ctx: Ctx, rid: str, resource: dict[str, Any], if_match: str | None) -> Written:
        found = ctx.session.scalar(self.base(ctx).where(Referral.id == self.parse_id(rid)))
        if found is None:
            raise NotFound(f"ServiceRequest/{rid} not found in your facility scope")
        etag_matches(if_match, version_of(found.updated_at))
        wanted = self._wanted(found, resource)
        if wanted == found.status:
            return Written(self.to_fhir((found,)), False)
        shown = referrals.service_request(found).get("occurrencePeriod", {})
        given = resource.get("occurrencePeriod") or {}
        edge = "start" if wanted in (ReferralStatus.ACCEPTED, ReferralStatus.ARRIVED) else "end"
        at = given.get(edge) if given.get(edge) != shown.get(edge) else None
        note = (first(resource.get("note")) or {}).get("text")
        change = checked(ReferralStatusIn, REFERRAL_PATHS, status=wanted, at=at, note=note)
        with business_rules():
            referrals.set_status(
                ctx.session,
                ctx.principal,
                found.id,
                change.status,
                at=change.at or utcnow(),
                note=change.note,
            )
        return Written(reread(ctx, self, found.id), False)

    @staticmethod
    def _wanted(found: Referral, resource: Mapping[str, Any]) -> str:
        status = resource.get("status")
        business = extension(resource, BUSINESS_STATUS_EXTENSION)
        named = scalar(business) if business else None
        if named is not None and named != found.status:  # the client changed the business status
            if named not in {s.value for s in ReferralStatus}:
                raise Unprocessable(f"unknown referral business status {named!r}")
            if referrals.FHIR_STATUS[ReferralStatus(named)] != status:
                raise Unprocessable(
                    f"ServiceRequest.status {status!r} does not fit the business status {named!r} "
                    f"(that is {referrals.FHIR_STATUS[ReferralStatus(named)]!r})"
                )
            return str(named)
        if status != referrals.FHIR_STATUS[ReferralStatus(found.status)]:  # only the FHIR status changed
            direct = {"completed": ReferralStatus.COMPLETED.value, "revoked": ReferralStatus.REVOKED.value}
            if status not in direct:
                raise Unprocessable(
                    f"ServiceRequest.status cannot be set to {status!r}; use completed or revoked, or "
                    f"the extension {BUSINESS_STATUS_EXTENSION} (accepted, arrived, declined, ...)"
                )
            return direct[str(status)]
        return found.status


# --- Encounter ↔ visit event ------------------------------------------------------------------


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM_SYSTEM, "code": unit}


def _measure_concept(m: Measure) -> dict[str, Any]:
    return {"coding": [{"system": LOINC_SYSTEM, "code": m.loinc, "display": m.display}], "text": m.display}


def _category(name: str) -> list[dict[str, Any]]:
    code = (
        category_of(codebook().by_key[CODED_MEASURES[name]].loinc) if name in CODED_MEASURES else "laboratory"
    )
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": CATEGORY_DISPLAY[code]}]}]


def visit_observations(e: ProgrammeEvent) -> list[dict[str, Any]]:
    """The visit's measurements as Observations to be contained in its Encounter."""
    book = codebook()
    values = {
        name: float(v)
        for name in (*CODED_MEASURES, *UNCODED_MEASURES)
        if isinstance(v := e.payload.get(name), int | float) and not isinstance(v, bool)
    }

    def observation(oid: str, name: str, code: dict[str, Any], **value: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "category": _category(name),
            "code": code,
            "subject": ref("Patient", e.patient_id),
            "encounter": {"reference": "#"},
            "effectiveDateTime": instant(e.effective_at),
            **value,
        }

    out: list[dict[str, Any]] = []
    pressure = [(n, book.by_key[CODED_MEASURES[n]]) for n in ("sbp", "dbp") if n in values]
    if pressure:
        components = [
            {"code": _measure_concept(m), "valueQuantity": _quantity(values[n], str(m.unit))}
            for n, m in pressure
        ]
        out.append(observation("bp", "sbp", _measure_concept(book.by_key[BP_PANEL]), component=components))
    for name, value in values.items():
        oid = name.replace("_", "-")
        if name in ("sbp", "dbp"):
            continue
        if name in CODED_MEASURES:
            m = book.by_key[CODED_MEASURES[name]]
            out.append(
                observation(oid, name, _measure_concept(m), valueQuantity=_quantity(value, str(m.unit)))
            )
        else:
            code = {"coding": [{"system": VISIT_MEASURE_SYSTEM, "code": name}], "text": name}
            out.append(observation(oid, name, code, valueQuantity=_quantity(value, UNCODED_MEASURES[name])))
    return out


def encounter_to_fhir(e: ProgrammeEvent) -> dict[str, Any]:
    return without_none(
        {
            "resourceType": "Encounter",
            "id": e.id,
            "meta": meta("1", e.recorded_at),
            "contained": visit_observations(e),
            "identifier": [{"system": EVENT_SYSTEM, "value": e.id}],
            "status": "finished",
            "class": {"system": ACT_CODE_SYSTEM, "code": "AMB", "display": "ambulatory"},
            "type": [{"coding": [{"system": EVENT_KIND_SYSTEM, "code": "visit", "display": "Clinic visit"}]}],
            "subject": ref("Patient", e.patient_id),
            "period": {"start": instant(e.effective_at)},
            "serviceProvider": ref("Organization", e.facility_id) if e.facility_id else None,
        }
    )


def _measure_names() -> dict[tuple[str, str], str]:
    """(system, code) → payload name, for reading a contained Observation."""
    book = codebook()
    names = {(LOINC_SYSTEM, book.by_key[m].loinc): n for n, m in CODED_MEASURES.items()}
    return names | {(VISIT_MEASURE_SYSTEM, n): n for n in UNCODED_MEASURES}


def _measurements(resource: Mapping[str, Any]) -> dict[str, float]:
    names, book, panel = _measure_names(), codebook(), codebook().by_key[BP_PANEL].loinc
    found: dict[str, float] = {}
    for i, item in enumerate(resource.get("contained") or []):
        where = f"Encounter.contained[{i}]"
        if item.get("resourceType") != "Observation":
            raise Unprocessable(
                f"{where}: an Encounter contains only the visit's measurements (Observations)"
            )
        parts = item.get("component") if code_in(item.get("code"), LOINC_SYSTEM) == panel else [item]
        for part in parts or []:
            pairs = [(str(c.get("system", "")), str(c.get("code", ""))) for c in codings(part.get("code"))]
            name = next((names[p] for p in pairs if p in names), None)
            quantity = part.get("valueQuantity") or {}
            if name is None:
                raise Unprocessable(
                    f"{where}: {pairs or 'no code'} is not a measurement a visit records "
                    f"(LOINC {', '.join(sorted(c for s, c in names if s == LOINC_SYSTEM))}, or "
                    f"{VISIT_MEASURE_SYSTEM} {', '.join(UNCODED_MEASURES)})"
                )
            unit = (
                str(book.by_key[CODED_MEASURES[name]].unit)
                if name in CODED_MEASURES
                else UNCODED_MEASURES[name]
            )
            if quantity.get("code", unit) != unit or not isinstance(quantity.get("value"), int | float):
                raise Unprocessable(f"{where}: {name} needs a valueQuantity in UCUM {unit}")
            if name in found:
                raise Unprocessable(f"{where}: {name} is given twice")
            found[name] = float(quantity["value"])
    return found


def _event_id_match(values: list[str], _modifier: str) -> ColumnElement[bool]:
    return ProgrammeEvent.id.in_(values)


def _event_identifier_match(system: str | None, code: str) -> ColumnElement[bool] | None:
    return ProgrammeEvent.id == code if system in (None, "", EVENT_SYSTEM) else None


class EncounterHandler(TableHandler):
    type = "Encounter"
    compartment = True
    interactions = ("read", "search-type", "create")
    read_roles = READERS
    write_roles = WRITERS
    includes: ClassVar[dict[str, str]] = {"subject": "Patient", "patient": "Patient"}
    id_column = ProgrammeEvent.id
    patient_column = ProgrammeEvent.patient_id
    updated_column = ProgrammeEvent.recorded_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "date": ProgrammeEvent.effective_at,
        "_lastUpdated": ProgrammeEvent.recorded_at,
    }
    doc = (
        "Clinic visits of the programmes (create = record the visit for every programme the patient "
        "is in); the measurements are contained Observations."
    )

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "_id": Param("_id", "token", "The resource id (the visit event's id)", _event_id_match),
            "identifier": token_param("identifier", "The visit event's id", _event_identifier_match),
            "patient": reference_param("patient", ProgrammeEvent.patient_id, "Patient", "The patient"),
            "subject": reference_param("subject", ProgrammeEvent.patient_id, "Patient", "The patient"),
            "status": enum_token(
                "status", ProgrammeEvent.kind, "finished (visits recorded)", {"finished": "visit"}
            ),
            "service-provider": reference_param(
                "service-provider", ProgrammeEvent.facility_id, "Organization", "The facility"
            ),
            "date": date_param("date", ProgrammeEvent.effective_at, "When the visit took place"),
        }

    def parse_id(self, rid: str) -> Any:
        if not EVENT_ID.match(rid):
            raise NotFound(f"Encounter/{rid} not found")
        return rid

    def base(self, ctx: Ctx) -> AnySelect:
        return self.scoped(ctx, select(ProgrammeEvent).where(ProgrammeEvent.kind == "visit"))

    def to_fhir(self, row: Any) -> Found:
        e: ProgrammeEvent = row[0]
        return Found(encounter_to_fhir(e), e.patient_id)

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        patient_id = reference_id(resource.get("subject"), "Patient", "Encounter.subject")
        require_patient(ctx, patient_id, "Encounter.subject")
        if resource.get("status") != "finished":
            raise Unprocessable("Encounter.status must be finished: a visit is recorded after it took place")
        if "serviceProvider" not in resource:
            raise Unprocessable("Encounter.serviceProvider (the facility of the visit) is required")
        facility = facility_in_scope(ctx, resource["serviceProvider"], "Encounter.serviceProvider")
        event_id = next(
            (
                str(i.get("value"))
                for i in resource.get("identifier") or []
                if i.get("system") == EVENT_SYSTEM
            ),
            None,
        )
        if event_id is not None and not FHIR_ID.match(event_id):
            raise Unprocessable(
                f"Encounter.identifier ({EVENT_SYSTEM}) must be a FHIR id: [A-Za-z0-9-.]{{1,64}}"
            )
        if not (resource.get("period") or {}).get("start"):
            raise Unprocessable("Encounter.period.start (when the visit took place) is required")
        measures = _measurements(resource)
        visit = checked(
            VisitIn,
            ENCOUNTER_PATHS,
            id=event_id,
            patient_id=patient_id,
            facility_id=facility,
            effective_at=(resource.get("period") or {}).get("start"),
            **measures,
        )
        if visit.id is not None:
            existing = ctx.session.get(ProgrammeEvent, visit.id)
            if existing is not None:  # a repeat: the REST API's retry rule (the sender's id)
                if existing.kind != "visit" or existing.patient_id != patient_id:
                    raise Conflict(f"event id {visit.id} is already used for another event")
                return Written(reread(ctx, self, visit.id), False)
        with business_rules():
            event_id, fresh, _ = service.record_visit(
                ctx.session,
                ctx.principal,
                patient_id=visit.patient_id,
                facility_id=visit.facility_id,
                at=visit.effective_at,
                measures=visit.model_dump(include=set(measures)),
                event_id=visit.id,
            )
        return Written(reread(ctx, self, event_id), fresh)
