"""Practitioner ↔ `practitioner`, PractitionerRole ↔ `practitioner_role`.

FHIR keeps a practitioner's roles apart from the practitioner, so a Practitioner can be created
without roles here (medloop's own API asks for at least one) and roles are added as
PractitionerRole resources.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ColumnElement, select

from medloop.auth.models import Role
from medloop.errors import Unprocessable
from medloop.fhir.common import (
    PRACTITIONER_ROLE_SYSTEM,
    Ctx,
    code_in,
    first,
    meta,
    ref,
    reference_id,
    version_of,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written
from medloop.fhir.mapping.patient import GENDER_IN, GENDER_OUT, etag_matches
from medloop.fhir.search import Param, bool_token, reference_param, string_param, token_param
from medloop.network.models import Organisation
from medloop.people.models import Practitioner, PractitionerRole


def practitioner_to_fhir(p: Practitioner) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": str(p.id),
        "meta": meta(version_of(p.updated_at), p.updated_at),
        "active": p.active,
        "name": [{"use": "official", "text": p.name, "family": p.family_name, "given": [p.given_name]}],
    }
    if p.phone:
        doc["telecom"] = [{"system": "phone", "value": p.phone, "use": "work"}]
    if p.sex:
        doc["gender"] = GENDER_OUT.get(p.sex, "unknown")
    if p.qualification:
        doc["qualification"] = [{"code": {"text": p.qualification}}]
    return doc


def role_to_fhir(r: PractitionerRole) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": str(r.id),
        "meta": meta("1", None),
        "active": r.active,
        "practitioner": ref("Practitioner", r.practitioner_id),
        "organization": ref("Organization", r.organisation_id),
        "location": [ref("Location", r.organisation_id)],
        "code": [{"coding": [{"system": PRACTITIONER_ROLE_SYSTEM, "code": r.role}]}],
    }
    if r.specialty:
        doc["specialty"] = [{"text": r.specialty}]
    return doc


def _apply(p: Practitioner, resource: dict[str, Any]) -> None:
    name = first(resource.get("name"))
    if not isinstance(name, dict) or not name.get("family") or not name.get("given"):
        raise Unprocessable("Practitioner.name[0] needs family and given")
    p.family_name, p.given_name = str(name["family"])[:100], " ".join(map(str, name["given"]))[:100]
    p.name = f"{p.family_name}{p.given_name}"
    p.sex = GENDER_IN.get(str(resource["gender"])) if resource.get("gender") else None
    phones = [t.get("value") for t in resource.get("telecom") or [] if t.get("system") == "phone"]
    p.phone = str(phones[0])[:32] if phones else None
    qualification = first(resource.get("qualification"))
    p.qualification = str(qualification["code"].get("text", ""))[:60] or None if qualification else None
    p.active = bool(resource.get("active", True))


class PractitionerHandler(TableHandler):
    type = "Practitioner"
    interactions = ("read", "search-type", "create", "update")
    write_roles = (Role.ADMIN,)
    id_column = Practitioner.id
    updated_column = Practitioner.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "name": Practitioner.name,
        "_lastUpdated": Practitioner.updated_at,
    }
    doc = "Doctors, nurses and other staff of the network."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "name": string_param(
                "name", [Practitioner.name, Practitioner.family_name, Practitioner.given_name], "Name"
            ),
            "active": bool_token("active", Practitioner.active, "Whether active"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return select(Practitioner)

    def to_fhir(self, row: Any) -> Found:
        return Found(practitioner_to_fhir(row[0]))

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        practitioner = Practitioner()
        _apply(practitioner, resource)
        ctx.session.add(practitioner)
        ctx.session.flush()
        return Written(Found(practitioner_to_fhir(practitioner)), True)

    def update(self, ctx: Ctx, rid: str, resource: dict[str, Any], if_match: str | None) -> Written:
        practitioner = ctx.session.get(Practitioner, self.parse_id(rid))
        if practitioner is None:
            self.read(ctx, rid)  # raises NotFound
            raise AssertionError
        etag_matches(if_match, version_of(practitioner.updated_at))
        _apply(practitioner, resource)
        ctx.session.flush()
        return Written(Found(practitioner_to_fhir(practitioner)), False)


def _role_code(_system: str | None, code: str) -> ColumnElement[bool] | None:
    return PractitionerRole.role == code


class PractitionerRoleHandler(TableHandler):
    type = "PractitionerRole"
    interactions = ("read", "search-type", "create")
    write_roles = (Role.ADMIN,)
    id_column = PractitionerRole.id
    doc = "Which practitioner works where, in which role."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "practitioner": reference_param(
                "practitioner", PractitionerRole.practitioner_id, "Practitioner", "The practitioner"
            ),
            "organization": reference_param(
                "organization", PractitionerRole.organisation_id, "Organization", "Where"
            ),
            "role": token_param("role", "Role code (gp, cardiologist, nurse, ...)", _role_code),
            "active": bool_token("active", PractitionerRole.active, "Whether active"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return select(PractitionerRole)

    def to_fhir(self, row: Any) -> Found:
        return Found(role_to_fhir(row[0]))

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        practitioner_id = reference_id(
            resource.get("practitioner"), "Practitioner", "PractitionerRole.practitioner"
        )
        org_id = reference_id(resource.get("organization"), "Organization", "PractitionerRole.organization")
        if ctx.session.get(Practitioner, practitioner_id) is None:
            raise Unprocessable(
                f"PractitionerRole.practitioner: Practitioner/{practitioner_id} does not exist"
            )
        if ctx.session.get(Organisation, org_id) is None:
            raise Unprocessable(f"PractitionerRole.organization: Organization/{org_id} does not exist")
        role = code_in(first(resource.get("code")), PRACTITIONER_ROLE_SYSTEM)
        if not role:
            raise Unprocessable(f"PractitionerRole.code needs a coding in {PRACTITIONER_ROLE_SYSTEM}")
        specialty = first(resource.get("specialty")) or {}
        row = PractitionerRole(
            practitioner_id=practitioner_id,
            organisation_id=org_id,
            role=role[:40],
            specialty=(specialty.get("text") or None),
            active=bool(resource.get("active", True)),
        )
        ctx.session.add(row)
        ctx.session.flush()
        return Written(Found(role_to_fhir(row)), True)
