"""Patient ↔ `patient` (+ `patient_identifier`). Writes go through `medloop.people.service`.

National IDs are never stored in clear: they are served masked (with the MASKED security label)
and searchable by the full number, which is hashed for the look-up. MRNs carry the issuing
organisation in the identifier system (`…/sid/mrn/<organisation id>`).
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from typing import Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import ColumnElement, or_, select

from medloop.auth.models import Role
from medloop.errors import BadRequest, PreconditionFailed, Unprocessable, error_summary, field_errors
from medloop.fhir.common import (
    MRN_SYSTEM_PREFIX,
    NATIONAL_ID_SYSTEM,
    SECURITY_MASKED,
    Ctx,
    first,
    meta,
    parse_date,
    parse_uuid,
    ref,
    reference_id,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written
from medloop.fhir.search import (
    Param,
    bool_token,
    date_param,
    enum_token,
    reference_param,
    string_param,
    token_param,
)
from medloop.network.models import Organisation
from medloop.people import service
from medloop.people.models import IdentifierSystem, Patient, PatientIdentifier
from medloop.people.schemas import PatientIn, PatientPatch

GENDER_OUT = {"M": "male", "F": "female", "U": "unknown"}
GENDER_IN = {"male": "M", "female": "F", "unknown": "U", "other": "U"}


def etag_matches(if_match: str | None, version: str) -> None:
    """If-Match: W/"<versionId>" must name the current version (412 otherwise)."""
    if if_match is None:
        return
    wanted = if_match.strip().removeprefix("W/").strip('"')
    if wanted != version:
        raise PreconditionFailed(f"version conflict: the resource is at version {version}, not {wanted}")


def patient_to_fhir(p: Patient) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = []
    masked = False
    for ident in p.identifiers:
        if ident.system == IdentifierSystem.NATIONAL_ID:
            masked = True
            identifiers.append({"use": "official", "system": NATIONAL_ID_SYSTEM, "value": ident.display})
        else:
            identifiers.append(
                {
                    "use": "usual",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                    },
                    "system": f"{MRN_SYSTEM_PREFIX}{ident.organisation_id}",
                    "value": ident.display,
                    "assigner": ref("Organization", ident.organisation_id),
                }
            )
    address: dict[str, Any] = {
        "use": "home",
        "state": p.province_code,
        "city": p.city_code,
        "district": p.district_code,
        "country": "CN",
    }
    if p.address:
        address["text"] = p.address
    doc: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(p.id),
        "meta": meta(str(p.version), p.updated_at, security=[SECURITY_MASKED] if masked else None),
        "identifier": identifiers or None,
        "active": p.active,
        "name": [{"use": "official", "text": p.name, "family": p.family_name, "given": [p.given_name]}],
        "telecom": [{"system": "phone", "value": p.phone, "use": "mobile"}] if p.phone else None,
        "gender": GENDER_OUT.get(p.sex, "unknown"),
        "birthDate": p.birth_date.isoformat(),
        "deceasedBoolean": p.deceased,
        "address": [address],
        "managingOrganization": ref("Organization", p.home_facility_id),
    }
    return {k: v for k, v in doc.items() if v is not None}


def _name(resource: dict[str, Any]) -> tuple[str, str]:
    name = first(resource.get("name"))
    if not isinstance(name, dict) or not name.get("family") or not name.get("given"):
        raise Unprocessable("Patient.name[0] needs family and given")
    return str(name["family"]), " ".join(str(g) for g in name["given"])


def _phone(resource: dict[str, Any]) -> str | None:
    for t in resource.get("telecom") or []:
        if isinstance(t, dict) and t.get("system") == "phone" and t.get("value"):
            return str(t["value"])
    return None


def _gender(resource: dict[str, Any]) -> str:
    return GENDER_IN.get(str(resource.get("gender", "unknown")), "U")


def _home_facility(ctx: Ctx, resource: dict[str, Any]) -> uuid.UUID:
    if "managingOrganization" in resource:
        return reference_id(resource["managingOrganization"], "Organization", "Patient.managingOrganization")
    if len(ctx.principal.facilities) == 1:
        return next(iter(ctx.principal.facilities))
    raise Unprocessable("Patient.managingOrganization (the home facility) is required")


def _validation_error(exc: ValidationError) -> Unprocessable:
    errors = field_errors(exc.errors())
    return Unprocessable(
        f"Patient does not fit medloop's patient record: {error_summary(errors)}", errors=errors
    )


def patient_in(ctx: Ctx, resource: dict[str, Any]) -> PatientIn:
    family, given = _name(resource)
    if not resource.get("birthDate"):
        raise Unprocessable("Patient.birthDate is required")
    facility_id = _home_facility(ctx, resource)
    org = ctx.session.get(Organisation, facility_id)
    if org is None:
        raise Unprocessable(f"Patient.managingOrganization: Organization/{facility_id} does not exist")
    address = first(resource.get("address")) or {}
    national_id = None
    mrns: list[dict[str, str]] = []
    for ident in resource.get("identifier") or []:
        system, value = ident.get("system", ""), ident.get("value")
        if system == NATIONAL_ID_SYSTEM and value:
            national_id = str(value)
        elif system.startswith(MRN_SYSTEM_PREFIX) and value:
            issuer = ctx.session.get(Organisation, parse_uuid(system.removeprefix(MRN_SYSTEM_PREFIX)))
            if issuer is None:
                raise Unprocessable(f"identifier system {system!r} names no known organisation")
            mrns.append({"organisation_code": issuer.code, "value": str(value)})
    try:
        return PatientIn(
            family_name=family,
            given_name=given,
            sex=_gender(resource),
            birth_date=parse_date(str(resource["birthDate"]), "Patient.birthDate"),
            phone=_phone(resource),
            province_code=address.get("state") or org.province_code,
            city_code=address.get("city") or org.city_code,
            district_code=address.get("district") or org.district_code,
            address=address.get("text"),
            home_facility_id=facility_id,
            national_id=national_id,
            mrns=mrns,
        )
    except ValidationError as exc:
        raise _validation_error(exc) from None


def patient_patch(ctx: Ctx, resource: dict[str, Any]) -> PatientPatch:
    family, given = _name(resource)
    address = first(resource.get("address")) or {}
    values: dict[str, Any] = {
        "family_name": family,
        "given_name": given,
        "phone": _phone(resource),
        "address": address.get("text"),
        "home_facility_id": _home_facility(ctx, resource),
        "deceased": bool(resource.get("deceasedBoolean", False)),
        "active": bool(resource.get("active", True)),
    }
    if address.get("district"):
        values["district_code"] = address["district"]
    try:
        return PatientPatch(**values)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _identifier(system: str | None, code: str) -> ColumnElement[bool] | None:
    ids = select(PatientIdentifier.patient_id)
    if system == NATIONAL_ID_SYSTEM:
        try:
            key = service.national_id_key(code)
        except BadRequest:
            return None
        return Patient.id.in_(ids.where(PatientIdentifier.value_key == key))
    if system and system.startswith(MRN_SYSTEM_PREFIX):
        org = system.removeprefix(MRN_SYSTEM_PREFIX)
        return Patient.id.in_(
            ids.where(
                PatientIdentifier.system == IdentifierSystem.MRN,
                PatientIdentifier.value_key == f"{org}:{code.strip()}",
            )
        )
    if system:
        return None
    conditions: list[ColumnElement[bool]] = [
        (PatientIdentifier.system == IdentifierSystem.MRN) & (PatientIdentifier.display == code)
    ]
    with suppress(BadRequest):
        conditions.append(PatientIdentifier.value_key == service.national_id_key(code))
    return Patient.id.in_(ids.where(or_(*conditions)))


class PatientHandler(TableHandler):
    type = "Patient"
    compartment = True
    interactions = ("read", "search-type", "create", "update")
    write_roles = (Role.CLINICIAN, Role.SCREENER)
    read_roles = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
    id_column = Patient.id
    patient_column = Patient.id
    updated_column = Patient.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "name": Patient.name,
        "family": Patient.family_name,
        "birthdate": Patient.birth_date,
        "_lastUpdated": Patient.updated_at,
    }
    doc = "Patients in the caller's facility scope; national IDs are served masked."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "identifier": token_param("identifier", "National ID (full number) or MRN", _identifier),
            "name": string_param(
                "name", [Patient.name, Patient.family_name, Patient.given_name], "Any part of the name"
            ),
            "family": string_param("family", [Patient.family_name], "Family name"),
            "given": string_param("given", [Patient.given_name], "Given name"),
            "birthdate": date_param("birthdate", Patient.birth_date, "Date of birth", is_date=True),
            "gender": enum_token("gender", Patient.sex, "male | female | unknown", GENDER_IN),
            "active": bool_token("active", Patient.active, "Whether the record is active"),
            "organization": reference_param(
                "organization", Patient.home_facility_id, "Organization", "Home facility"
            ),
            "address-district": enum_token(
                "address-district", Patient.district_code, "GB/T 2260 district code"
            ),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return self.scoped(ctx, select(Patient))

    def to_fhir(self, row: Any) -> Found:
        patient: Patient = row[0]
        return Found(patient_to_fhir(patient), patient.id)

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        patient = service.create_patient(ctx.session, ctx.principal, patient_in(ctx, resource))
        return Written(Found(patient_to_fhir(patient), patient.id), True)

    def update(self, ctx: Ctx, rid: str, resource: dict[str, Any], if_match: str | None) -> Written:
        current = service.get_patient(ctx.session, ctx.principal, self.parse_id(rid), audit=False)
        etag_matches(if_match, str(current.version))
        patient = service.update_patient(ctx.session, ctx.principal, current.id, patient_patch(ctx, resource))
        return Written(Found(patient_to_fhir(patient), patient.id), False)
