"""Use cases for patients and practitioners. Every patient query goes through the facility scope
(`medloop.auth.scope`) and every read or write leaves an audit record."""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import date

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope, scoped_patients
from medloop.errors import BadRequest, Conflict, Forbidden, NotFound
from medloop.network.models import Organisation
from medloop.pagination import PageParams
from medloop.people.identifiers import hash_identifier, mask_national_id, mrn_key, normalise_national_id
from medloop.people.models import IdentifierSystem, Patient, PatientIdentifier, Practitioner, PractitionerRole
from medloop.people.schemas import PatientIn, PatientPatch, PractitionerIn
from medloop.settings import get_settings


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def national_id_key(national_id: str) -> str:
    try:
        normalised = normalise_national_id(national_id)
    except ValueError as exc:
        raise BadRequest(str(exc), field="national_id") from exc
    return hash_identifier(normalised, get_settings().identifier_key)


def _org_by_code(session: Session, code: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.code == code))
    if org is None:
        raise BadRequest(f"organisation {code!r} does not exist")
    return org


def _require_facility_in_scope(principal: Principal, facility_id: uuid.UUID) -> None:
    if not principal.can_see_facility(facility_id):
        raise Forbidden("that facility is outside your facility scope")


def create_patient(session: Session, principal: Principal, data: PatientIn) -> Patient:
    if session.get(Organisation, data.home_facility_id) is None:
        raise BadRequest(f"home facility {data.home_facility_id} does not exist")
    _require_facility_in_scope(principal, data.home_facility_id)
    if data.birth_date > date.today():
        raise BadRequest("birth date is in the future", field="birth_date")
    identifiers: list[PatientIdentifier] = []
    if data.national_id:
        key = national_id_key(data.national_id)
        existing = session.scalar(
            select(PatientIdentifier.patient_id).where(
                PatientIdentifier.system == IdentifierSystem.NATIONAL_ID, PatientIdentifier.value_key == key
            )
        )
        if existing is not None:
            visible = session.scalar(
                select(Patient.id).where(Patient.id == existing, patient_in_scope(principal, Patient.id))
            )
            raise Conflict(
                "a patient with this national ID already exists",
                existing_patient_id=str(existing) if visible else None,
            )
        normalised = normalise_national_id(data.national_id)
        identifiers.append(
            PatientIdentifier(
                system=IdentifierSystem.NATIONAL_ID, value_key=key, display=mask_national_id(normalised)
            )
        )
    for mrn in data.mrns:
        org = _org_by_code(session, mrn.organisation_code)
        _require_facility_in_scope(principal, org.id)
        key = mrn_key(org.id, mrn.value)
        if session.scalar(
            select(PatientIdentifier.id).where(
                PatientIdentifier.system == IdentifierSystem.MRN, PatientIdentifier.value_key == key
            )
        ):
            raise Conflict(f"MRN {mrn.value!r} is already used at {mrn.organisation_code}")
        identifiers.append(
            PatientIdentifier(
                system=IdentifierSystem.MRN, value_key=key, display=mrn.value.strip(), organisation_id=org.id
            )
        )
    patient = Patient(
        **data.model_dump(exclude={"national_id", "mrns", "consent"}),
        name=f"{data.family_name}{data.given_name}",
        consent=data.consent.model_dump(),
        identifiers=identifiers,
    )
    session.add(patient)
    session.flush()
    record_access(session, principal, "create", "Patient", [patient.id])
    return patient


def get_patient(
    session: Session, principal: Principal, patient_id: uuid.UUID, *, audit: bool = True
) -> Patient:
    patient = session.scalar(scoped_patients(principal).where(Patient.id == patient_id))
    if patient is None:
        # Same answer whether the patient does not exist or is outside the scope: no existence leak.
        raise NotFound(f"patient {patient_id} not found in your facility scope")
    if audit:
        record_access(session, principal, "read", "Patient", [patient.id])
    return patient


def search_patients(
    session: Session,
    principal: Principal,
    page: PageParams,
    *,
    name: str | None = None,
    identifier: str | None = None,
    district_code: str | None = None,
    home_facility_id: uuid.UUID | None = None,
) -> tuple[list[Patient], int]:
    stmt = scoped_patients(principal)
    if name:
        stmt = stmt.where(or_(Patient.name.ilike(f"%{name}%"), Patient.family_name.ilike(f"{name}%")))
    if identifier:
        conditions: list[ColumnElement[bool]] = [
            (PatientIdentifier.system == IdentifierSystem.MRN)
            & (PatientIdentifier.display == identifier.strip())
        ]
        with suppress(BadRequest):  # not a national ID: match MRNs only
            conditions.append(PatientIdentifier.value_key == national_id_key(identifier))
        stmt = stmt.where(Patient.id.in_(select(PatientIdentifier.patient_id).where(or_(*conditions))))
    if district_code:
        stmt = stmt.where(Patient.district_code == district_code)
    if home_facility_id:
        stmt = stmt.where(Patient.home_facility_id == home_facility_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(
        session.scalars(stmt.order_by(Patient.name, Patient.id).limit(page.limit).offset(page.offset)).all()
    )
    record_access(
        session,
        principal,
        "search",
        "Patient",
        [p.id for p in rows],
        detail={"returned": len(rows), "total": total},
    )
    return rows, total


def update_patient(
    session: Session, principal: Principal, patient_id: uuid.UUID, patch: PatientPatch
) -> Patient:
    patient = get_patient(session, principal, patient_id, audit=False)
    changes = patch.model_dump(exclude_unset=True)
    if "home_facility_id" in changes:
        if session.get(Organisation, changes["home_facility_id"]) is None:
            raise BadRequest(f"home facility {changes['home_facility_id']} does not exist")
        _require_facility_in_scope(principal, changes["home_facility_id"])
    for key, value in changes.items():  # nested models arrive as plain dicts from model_dump
        setattr(patient, key, value)
    patient.name = f"{patient.family_name}{patient.given_name}"
    patient.version += 1
    session.flush()
    record_access(session, principal, "update", "Patient", [patient.id], detail={"fields": sorted(changes)})
    return patient


def create_practitioner(session: Session, data: PractitionerIn) -> Practitioner:
    roles = [
        PractitionerRole(
            organisation_id=_org_by_code(session, r.organisation_code).id, role=r.role, specialty=r.specialty
        )
        for r in data.roles
    ]
    practitioner = Practitioner(
        **data.model_dump(exclude={"roles"}), name=f"{data.family_name}{data.given_name}", roles=roles
    )
    session.add(practitioner)
    session.flush()
    return practitioner


def search_practitioners(
    session: Session, page: PageParams, *, name: str | None = None, organisation_id: uuid.UUID | None = None
) -> tuple[list[Practitioner], int]:
    stmt = select(Practitioner)
    if name:
        stmt = stmt.where(Practitioner.name.ilike(f"%{name}%"))
    if organisation_id:
        stmt = stmt.where(
            Practitioner.id.in_(
                select(PractitionerRole.practitioner_id).where(
                    PractitionerRole.organisation_id == organisation_id
                )
            )
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(session.scalars(stmt.order_by(Practitioner.name).limit(page.limit).offset(page.offset)).all())
    return rows, total
