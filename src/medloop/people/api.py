"""/api/v1/patients and /api/v1/practitioners. Thin: parse, authorise, call the service, shape."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from medloop.auth.deps import CurrentPrincipal, DbSession
from medloop.auth.models import Role
from medloop.pagination import Page, PageParams, page_params
from medloop.people import service
from medloop.people.models import Patient
from medloop.people.schemas import (
    PatientIn,
    PatientOut,
    PatientPatch,
    PractitionerIn,
    PractitionerOut,
)

router = APIRouter(prefix="/api/v1", tags=["people"])

PATIENT_READERS = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
PATIENT_WRITERS = (Role.CLINICIAN, Role.SCREENER)


def patient_out(patient: Patient, today: date | None = None) -> PatientOut:
    fields = set(PatientOut.model_fields) - {"age"}
    values = {f: getattr(patient, f) for f in fields}
    return PatientOut.model_validate(
        values | {"age": service.age_on(patient.birth_date, today or date.today())}
    )


@router.get("/patients", response_model=Page[PatientOut])
def search_patients(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    name: Annotated[str | None, Query(max_length=100)] = None,
    identifier: Annotated[str | None, Query(max_length=64, description="National ID or MRN")] = None,
    district_code: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    home_facility_id: uuid.UUID | None = None,
) -> Page[PatientOut]:
    principal.require_role(*PATIENT_READERS)
    rows, total = service.search_patients(
        session,
        principal,
        page,
        name=name,
        identifier=identifier,
        district_code=district_code,
        home_facility_id=home_facility_id,
    )
    return Page.of([patient_out(p) for p in rows], total, page)


@router.post("/patients", response_model=PatientOut, status_code=status.HTTP_201_CREATED)
def create_patient(data: PatientIn, session: DbSession, principal: CurrentPrincipal) -> PatientOut:
    principal.require_role(*PATIENT_WRITERS)
    return patient_out(service.create_patient(session, principal, data))


@router.get("/patients/{patient_id}", response_model=PatientOut)
def read_patient(patient_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> PatientOut:
    principal.require_role(*PATIENT_READERS)
    return patient_out(service.get_patient(session, principal, patient_id))


@router.patch("/patients/{patient_id}", response_model=PatientOut)
def update_patient(
    patient_id: uuid.UUID, patch: PatientPatch, session: DbSession, principal: CurrentPrincipal
) -> PatientOut:
    principal.require_role(*PATIENT_WRITERS)
    return patient_out(service.update_patient(session, principal, patient_id, patch))


@router.get("/practitioners", response_model=Page[PractitionerOut])
def search_practitioners(
    session: DbSession,
    _principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    name: Annotated[str | None, Query(max_length=100)] = None,
    organisation_id: uuid.UUID | None = None,
) -> Page[PractitionerOut]:
    rows, total = service.search_practitioners(session, page, name=name, organisation_id=organisation_id)
    return Page.of([PractitionerOut.model_validate(p) for p in rows], total, page)


@router.post("/practitioners", response_model=PractitionerOut, status_code=status.HTTP_201_CREATED)
def create_practitioner(
    data: PractitionerIn, session: DbSession, principal: CurrentPrincipal
) -> PractitionerOut:
    principal.require_role(Role.ADMIN)
    return PractitionerOut.model_validate(service.create_practitioner(session, data))
