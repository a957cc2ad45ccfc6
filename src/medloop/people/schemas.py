"""Request and response models for patients and practitioners."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_REGION = Field(pattern=r"^\d{6}$", description="GB/T 2260 6-digit administrative division code")


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_processing: bool = True  # care delivery within the network
    contact: bool = True  # phone follow-up and reminders
    device_monitoring: bool = False
    research: bool = False  # de-identified real-world evidence


class MrnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_code: str
    value: str = Field(min_length=1, max_length=40)


class PatientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family_name: str = Field(min_length=1, max_length=100)
    given_name: str = Field(min_length=1, max_length=100)
    sex: Literal["M", "F", "U"]
    birth_date: date
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$")
    province_code: str = _REGION
    city_code: str = _REGION
    district_code: str = _REGION
    address: str | None = Field(default=None, max_length=300)
    home_facility_id: uuid.UUID
    national_id: str | None = Field(default=None, description="18-character resident ID; stored only hashed")
    mrns: list[MrnIn] = []
    consent: Consent = Consent()


class PatientPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family_name: str | None = Field(default=None, min_length=1, max_length=100)
    given_name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$")
    address: str | None = Field(default=None, max_length=300)
    district_code: str | None = Field(default=None, pattern=r"^\d{6}$")
    home_facility_id: uuid.UUID | None = None
    consent: Consent | None = None
    deceased: bool | None = None
    active: bool | None = None


class IdentifierOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    system: str
    display: str
    organisation_id: uuid.UUID | None


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    family_name: str
    given_name: str
    name: str
    sex: str
    birth_date: date
    age: int
    phone: str | None
    province_code: str
    city_code: str
    district_code: str
    address: str | None
    home_facility_id: uuid.UUID
    consent: dict[str, bool]
    active: bool
    deceased: bool
    version: int
    identifiers: list[IdentifierOut]
    updated_at: datetime


class PractitionerRoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_code: str
    role: str = Field(min_length=1, max_length=40)
    specialty: str | None = None


class PractitionerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family_name: str = Field(min_length=1, max_length=100)
    given_name: str = Field(min_length=1, max_length=100)
    sex: Literal["M", "F", "U"] | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$")
    qualification: str | None = None
    roles: list[PractitionerRoleIn] = Field(min_length=1)


class PractitionerRoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    organisation_id: uuid.UUID
    role: str
    specialty: str | None
    active: bool


class PractitionerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    family_name: str
    given_name: str
    sex: str | None
    qualification: str | None
    active: bool
    roles: list[PractitionerRoleOut]
