"""Resource types with no medloop table of their own, kept whole in `fhir_resource`.

What search needs is extracted on write, as described by one `Spec` per type (a row of `SPECS`):
the patient (for facility scope), one date, one status, and token parameters (stored in
`fhir_token`). Adding a type is one more row. Every such resource belongs to a patient in the
writer's facility scope, and references to resources medloop serves must resolve.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, delete, exists, insert, select

from medloop.auth.models import Role
from medloop.errors import NotFound, Unprocessable
from medloop.fhir.common import Ctx, Gone, meta, parse_uuid
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written, require_patient
from medloop.fhir.mapping.patient import etag_matches
from medloop.fhir.models import FhirResource, FhirToken
from medloop.fhir.search import Param, date_param, enum_token, reference_param, token_param
from medloop.store.base import utcnow


@dataclass(frozen=True)
class Spec:
    type: str
    patient: str  # element holding the patient reference
    dates: tuple[str, ...]  # the first present is the `date` search parameter
    status: tuple[str, str] | None  # (search parameter name, element)
    tokens: dict[str, str] = field(default_factory=dict)  # search parameter -> element
    doc: str = ""


SPECS = (
    Spec(
        "Condition",
        "subject",
        ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
        ("clinical-status", "clinicalStatus"),
        {
            "code": "code",
            "category": "category",
            "verification-status": "verificationStatus",
            "identifier": "identifier",
        },
        "Problems and diagnoses (e.g. hypertension, type 2 diabetes).",
    ),
    Spec(
        "QuestionnaireResponse",
        "subject",
        ("authored",),
        ("status", "status"),
        {"questionnaire": "questionnaire", "identifier": "identifier"},
        "Answers to questionnaires (e.g. screening questionnaires).",
    ),
)


def values_at(resource: Any, path: str) -> list[Any]:
    """Every value at a dotted path, flattening lists on the way."""
    current = [resource]
    for part in path.split("."):
        nxt: list[Any] = []
        for value in current:
            item = value.get(part) if isinstance(value, dict) else None
            if isinstance(item, list):
                nxt.extend(item)
            elif item is not None:
                nxt.append(item)
        current = nxt
    return current


def tokens_of(value: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept, Coding, Identifier or code."""
    if isinstance(value, str):
        return [("", value)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("coding"), list):
        return [pair for c in value["coding"] for pair in tokens_of(c)]
    code = value.get("code", value.get("value"))
    return [(str(value.get("system", "")), str(code))] if isinstance(code, str) else []


def date_of(resource: dict[str, Any], paths: tuple[str, ...]) -> datetime | None:
    for path in paths:
        for value in values_at(resource, path):
            if isinstance(value, str):
                try:
                    if len(value) <= 10:
                        d = date.fromisoformat(value + "-01" * (2 - value.count("-")))
                        return datetime(d.year, d.month, d.day, tzinfo=UTC)
                    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    continue
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


class StoredHandler(TableHandler):
    """One row of SPECS, served from `fhir_resource`."""

    compartment = True
    interactions = ("read", "search-type", "create", "update", "delete")
    write_roles = (Role.CLINICIAN, Role.SCREENER)
    read_roles = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
    includes: ClassVar[dict[str, str]] = {"subject": "Patient", "patient": "Patient"}
    id_column = FhirResource.id
    patient_column = FhirResource.patient_id
    updated_column = FhirResource.last_updated

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.type = spec.type  # type: ignore[misc]
        self.doc = spec.doc  # type: ignore[misc]
        self.sort_columns = {"date": FhirResource.date, "_lastUpdated": FhirResource.last_updated}  # type: ignore[misc]

    def params(self) -> dict[str, Param]:
        params = {
            **self.common_params(),
            "patient": reference_param("patient", FhirResource.patient_id, "Patient", "The patient"),
            "subject": reference_param("subject", FhirResource.patient_id, "Patient", "The patient"),
            "date": date_param("date", FhirResource.date, f"{' | '.join(self.spec.dates)}"),
        }
        if self.spec.status:
            name, element = self.spec.status
            params[name] = enum_token(name, FhirResource.status, f"{self.spec.type}.{element}")
        for name, element in self.spec.tokens.items():
            params[name] = token_param(name, f"{self.spec.type}.{element}", self._token(name))
        return params

    def _token(self, name: str) -> Any:
        def match(system: str | None, code: str) -> ColumnElement[bool]:
            cond = [
                FhirToken.resource_type == self.spec.type,
                FhirToken.resource_id == FhirResource.id,
                FhirToken.param == name,
            ]
            if code:
                cond.append(FhirToken.code == code)
            if system is not None:
                cond.append(FhirToken.system == system)
            return exists().where(*cond)

        return match

    def base(self, ctx: Ctx) -> AnySelect:
        stmt = select(FhirResource).where(
            FhirResource.resource_type == self.spec.type, FhirResource.deleted.is_(False)
        )
        return self.scoped(ctx, stmt)

    def to_fhir(self, row: Any) -> Found:
        r: FhirResource = row[0]
        client_meta = {
            k: v for k, v in (r.data.get("meta") or {}).items() if k in ("profile", "tag", "security")
        }
        doc = {**r.data, "id": str(r.id), "meta": {**client_meta, **meta(str(r.version_id), r.last_updated)}}
        return Found(doc, r.patient_id)

    def _row(self, ctx: Ctx, rid: str) -> FhirResource:
        row = ctx.session.scalar(
            self.scoped(
                ctx,
                select(FhirResource).where(
                    FhirResource.resource_type == self.spec.type, FhirResource.id == self.parse_id(rid)
                ),
            )
        )
        if row is None:
            raise NotFound(f"{self.spec.type}/{rid} not found in your facility scope")
        return row

    def read(self, ctx: Ctx, rid: str) -> Found:
        row = self._row(ctx, rid)
        if row.deleted:
            raise Gone(f"{self.spec.type}/{rid} was deleted (version {row.version_id})")
        return self.to_fhir((row,))

    def _check(self, ctx: Ctx, resource: dict[str, Any]) -> tuple[uuid.UUID, dict[str, Any]]:
        from medloop.fhir.registry import handler_or_none  # the registry imports this module

        subject = values_at(resource, self.spec.patient)
        text = subject[0].get("reference") if subject and isinstance(subject[0], dict) else None
        parts = str(text or "").split("/")
        patient_id = parse_uuid(parts[-1]) if len(parts) >= 2 and parts[-2] == "Patient" else None
        if patient_id is None:
            raise Unprocessable(f"{self.spec.type}.{self.spec.patient} must reference Patient/<id>")
        require_patient(ctx, patient_id, f"{self.spec.type}.{self.spec.patient}")
        for reference in references(resource):
            if reference.startswith(("urn:uuid:", "urn:oid:")):
                raise Unprocessable(f"reference {reference!r} does not resolve (not in this transaction)")
            kind, _, rid = reference.partition("/")
            handler = handler_or_none(kind) if rid and "/" not in rid and "://" not in reference else None
            if handler is not None and not handler.exists(ctx, rid):
                raise Unprocessable(f"reference {reference!r} does not resolve to a resource you may see")
        data = {k: v for k, v in resource.items() if k not in ("id",)}
        return patient_id, data

    def _tokens(self, rid: uuid.UUID, resource: dict[str, Any]) -> list[dict[str, Any]]:
        rows = {
            (name, system[:200], code[:200])
            for name, element in self.spec.tokens.items()
            for value in values_at(resource, element)
            for system, code in tokens_of(value)
        }
        return [
            {"resource_type": self.spec.type, "resource_id": rid, "param": n, "system": s, "code": c}
            for n, s, c in sorted(rows)
        ]

    def _status(self, resource: dict[str, Any]) -> str | None:
        if not self.spec.status:
            return None
        found = [code for v in values_at(resource, self.spec.status[1]) for _, code in tokens_of(v)]
        return found[0][:40] if found else None

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        patient_id, data = self._check(ctx, resource)
        row = FhirResource(
            resource_type=self.spec.type,
            id=uuid.uuid4(),
            version_id=1,
            last_updated=utcnow(),
            deleted=False,
            patient_id=patient_id,
            date=date_of(resource, self.spec.dates),
            status=self._status(resource),
            data=data,
        )
        ctx.session.add(row)
        ctx.session.flush()
        tokens = self._tokens(row.id, resource)
        if tokens:
            ctx.session.execute(insert(FhirToken), tokens)
        return Written(self.to_fhir((row,)), True)

    def update(self, ctx: Ctx, rid: str, resource: dict[str, Any], if_match: str | None) -> Written:
        row = self._row(ctx, rid)
        etag_matches(if_match, str(row.version_id))
        patient_id, data = self._check(ctx, resource)
        row.patient_id, row.data = patient_id, data
        row.date, row.status = date_of(resource, self.spec.dates), self._status(resource)
        row.version_id += 1
        row.last_updated, row.deleted = utcnow(), False
        self._clear_tokens(ctx, row.id)
        tokens = self._tokens(row.id, resource)
        if tokens:
            ctx.session.execute(insert(FhirToken), tokens)
        ctx.session.flush()
        return Written(self.to_fhir((row,)), False)

    def delete(self, ctx: Ctx, rid: str, if_match: str | None) -> uuid.UUID | None:
        row = self._row(ctx, rid)
        if row.deleted:
            return row.patient_id
        etag_matches(if_match, str(row.version_id))
        row.deleted, row.version_id, row.last_updated = True, row.version_id + 1, utcnow()
        self._clear_tokens(ctx, row.id)
        ctx.session.flush()
        return row.patient_id

    def _clear_tokens(self, ctx: Ctx, rid: uuid.UUID) -> None:
        ctx.session.execute(
            delete(FhirToken).where(FhirToken.resource_type == self.spec.type, FhirToken.resource_id == rid)
        )
