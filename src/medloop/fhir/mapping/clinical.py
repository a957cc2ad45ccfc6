"""RiskAssessment ↔ `risk_assessment` (screening results) and AuditEvent ↔ `audit_event` (read-only).

A risk model's score is not always a probability (some are points), so it is served in an
extension (`…/risk-score`), and the model's category as `prediction.qualitativeRisk`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, select

from medloop.auth.models import AuditEvent, Role
from medloop.errors import NotFound, Unprocessable
from medloop.fhir.common import (
    RISK_CATEGORY_SYSTEM,
    RISK_MODEL_SYSTEM,
    RISK_SCORE_EXTENSION,
    Ctx,
    code_in,
    first,
    instant,
    meta,
    ref,
    reference_id,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written, require_patient
from medloop.fhir.search import Param, date_param, enum_token, reference_param, token_param
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow


def risk_to_fhir(r: RiskAssessment) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "qualitativeRisk": {
            "coding": [{"system": RISK_CATEGORY_SYSTEM, "code": r.category}],
            "text": r.category,
        }
    }
    doc: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": str(r.id),
        "meta": meta("1", r.assessed_at),
        "status": "final",
        "subject": ref("Patient", r.patient_id),
        "occurrenceDateTime": instant(r.assessed_at),
        "method": {
            "coding": [{"system": RISK_MODEL_SYSTEM, "code": r.model, "version": r.model_version}],
            "text": f"{r.model} {r.model_version}",
        },
        "prediction": [prediction],
    }
    if r.score is not None:
        doc["extension"] = [{"url": RISK_SCORE_EXTENSION, "valueDecimal": r.score}]
    notes = [*r.reasons, *(f"flag: {f}" for f in r.flags)]
    if notes:
        doc["note"] = [{"text": n} for n in notes]
    if r.source:
        doc["identifier"] = [{"system": "https://medloop.dev/fhir/sid/screening-run", "value": r.source}]
    return doc


def _method(system: str | None, code: str) -> ColumnElement[bool] | None:
    return RiskAssessment.model == code if system in (None, "", RISK_MODEL_SYSTEM) else None


class RiskAssessmentHandler(TableHandler):
    type = "RiskAssessment"
    compartment = True
    interactions = ("read", "search-type", "create")
    write_roles = (Role.CLINICIAN, Role.SCREENER)
    read_roles = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
    includes: ClassVar[dict[str, str]] = {"subject": "Patient", "patient": "Patient"}
    id_column = RiskAssessment.id
    patient_column = RiskAssessment.patient_id
    updated_column = RiskAssessment.assessed_at
    sort_columns: ClassVar[dict[str, Any]] = {"date": RiskAssessment.assessed_at}
    doc = "Screening results: one per person per risk model per run."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "patient": reference_param("patient", RiskAssessment.patient_id, "Patient", "The patient"),
            "subject": reference_param("subject", RiskAssessment.patient_id, "Patient", "The patient"),
            "date": date_param("date", RiskAssessment.assessed_at, "When assessed"),
            "method": token_param("method", "Risk model (china_par, copd_sq, ...)", _method),
            "risk": enum_token("risk", RiskAssessment.category, "Model category (qualitativeRisk)"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return self.scoped(ctx, select(RiskAssessment))

    def to_fhir(self, row: Any) -> Found:
        r: RiskAssessment = row[0]
        return Found(risk_to_fhir(r), r.patient_id)

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        patient_id = reference_id(resource.get("subject"), "Patient", "RiskAssessment.subject")
        require_patient(ctx, patient_id, "RiskAssessment.subject")
        method = resource.get("method") or {}
        model = code_in(method, RISK_MODEL_SYSTEM)
        prediction = first(resource.get("prediction")) or {}
        category = code_in(prediction.get("qualitativeRisk"), RISK_CATEGORY_SYSTEM)
        if not model or not category:
            raise Unprocessable(
                f"RiskAssessment needs method coded in {RISK_MODEL_SYSTEM} and "
                f"prediction[0].qualitativeRisk coded in {RISK_CATEGORY_SYSTEM}"
            )
        version = next((c.get("version") for c in method.get("coding", []) if c.get("code") == model), None)
        score = next(
            (
                e.get("valueDecimal")
                for e in resource.get("extension") or []
                if e.get("url") == RISK_SCORE_EXTENSION
            ),
            prediction.get("probabilityDecimal"),
        )
        at = resource.get("occurrenceDateTime")
        row = RiskAssessment(
            patient_id=patient_id,
            model=model[:40],
            model_version=str(version or "unspecified")[:40],
            score=float(score) if isinstance(score, int | float) else None,
            category=category[:40],
            reasons=[str(n.get("text", "")) for n in resource.get("note") or [] if n.get("text")],
            flags=[],
            assessed_at=_instant(at) if isinstance(at, str) else utcnow(),
            source="fhir",
        )
        ctx.session.add(row)
        ctx.session.flush()
        return Written(Found(risk_to_fhir(row), patient_id), True)


def _instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unprocessable("occurrenceDateTime is not a date-time") from None
    if parsed.tzinfo is None:
        raise Unprocessable("occurrenceDateTime needs a UTC offset")
    return parsed


# --- AuditEvent -------------------------------------------------------------------------------

ACTION_CODES = {"create": "C", "read": "R", "search": "E", "update": "U", "delete": "D", "export": "R"}
INTERACTIONS = {
    "read": "read",
    "search": "search-type",
    "create": "create",
    "update": "update",
    "delete": "delete",
}


def audit_to_fhir(e: AuditEvent) -> dict[str, Any]:
    entities: list[dict[str, Any]] = []
    if e.patient_id is not None:
        entities.append({"what": ref("Patient", e.patient_id), "type": {"code": "1", "display": "Person"}})
    if e.resource_id:
        entities.append({"what": {"display": f"{e.resource_type}/{e.resource_id}"}})
    elif e.resource_type:
        entities.append({"what": {"display": e.resource_type}})
    agent: dict[str, Any] = {"who": {"display": e.actor}, "requestor": True}
    if e.actor_id is not None:
        agent["who"]["identifier"] = {"system": "https://medloop.dev/fhir/sid/user", "value": str(e.actor_id)}
    if e.source:
        agent["network"] = {"address": e.source, "type": "2"}
    doc: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(e.id),
        "meta": meta("1", e.at),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "action": ACTION_CODES.get(e.action, "E"),
        "recorded": instant(e.at),
        "outcome": "0" if e.outcome == "success" else "4",
        "purposeOfEvent": [{"text": e.purpose}],
        "agent": [agent],
        "source": {"observer": {"display": "medloop"}},
        "entity": entities or None,
    }
    if e.action in INTERACTIONS:
        doc["subtype"] = [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": INTERACTIONS[e.action]}
        ]
    elif e.action:
        doc["subtype"] = [{"system": "https://medloop.dev/fhir/CodeSystem/audit-action", "code": e.action}]
    return {k: v for k, v in doc.items() if v is not None}


class AuditEventHandler(TableHandler):
    type = "AuditEvent"
    read_roles = (Role.ADMIN,)
    id_column = AuditEvent.id
    updated_column = AuditEvent.at
    sort_columns: ClassVar[dict[str, Any]] = {"date": AuditEvent.at}
    doc = "The audit trail (admins only; read-only)."

    def params(self) -> dict[str, Param]:
        def ids(values: list[str], _modifier: str) -> ColumnElement[bool]:
            return AuditEvent.id.in_([int(v) for v in values if v.isdigit()])

        return {
            "_id": Param("_id", "token", "The event id", ids),
            "date": date_param("date", AuditEvent.at, "When"),
            "patient": reference_param("patient", AuditEvent.patient_id, "Patient", "Whose data"),
            "entity": reference_param("entity", AuditEvent.patient_id, "Patient", "Whose data"),
            "agent-name": enum_token("agent-name", AuditEvent.actor, "Username of the actor"),
            "action": enum_token(
                "action",
                AuditEvent.action,
                "C | R | U | D | E",
                {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "search"},
            ),
            "subtype": enum_token("subtype", AuditEvent.action, "medloop action (read, search, export, ...)"),
        }

    def parse_id(self, rid: str) -> Any:
        if not rid.isdigit():
            raise NotFound(f"AuditEvent/{rid} not found")
        return int(rid)

    def base(self, ctx: Ctx) -> AnySelect:
        return select(AuditEvent)

    def to_fhir(self, row: Any) -> Found:
        return Found(audit_to_fhir(row[0]), row[0].patient_id)
