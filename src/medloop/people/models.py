"""Patients (with identifiers and consent) and practitioners (with roles at organisations)."""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medloop.store.base import Base, TimestampMixin, new_id


class IdentifierSystem(StrEnum):
    NATIONAL_ID = "national-id"  # PRC resident identity card number; stored as keyed hash + masked form
    MRN = "mrn"  # medical record number, unique per organisation


class Patient(TimestampMixin, Base):
    __tablename__ = "patient"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    family_name: Mapped[str] = mapped_column(String(100))
    given_name: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), index=True)  # full display name, searchable
    sex: Mapped[str] = mapped_column(String(1))  # M / F / U
    birth_date: Mapped[date]
    phone: Mapped[str | None] = mapped_column(String(32))
    province_code: Mapped[str] = mapped_column(String(6))
    city_code: Mapped[str] = mapped_column(String(6))
    district_code: Mapped[str] = mapped_column(String(6), index=True)
    address: Mapped[str | None] = mapped_column(String(300))
    home_facility_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"), index=True)
    consent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    deceased: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(default=1)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", lazy="selectin"
    )


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    __table_args__ = (UniqueConstraint("system", "value_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    system: Mapped[str] = mapped_column(String(20))
    # national-id: HMAC-SHA256 of the normalised number; mrn: "<organisation id>:<mrn>".
    value_key: Mapped[str] = mapped_column(String(100))
    display: Mapped[str] = mapped_column(String(64))  # masked for national IDs
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisation.id"), index=True)

    patient: Mapped[Patient] = relationship(back_populates="identifiers")


class Practitioner(TimestampMixin, Base):
    __tablename__ = "practitioner"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    family_name: Mapped[str] = mapped_column(String(100))
    given_name: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), index=True)
    sex: Mapped[str | None] = mapped_column(String(1))
    phone: Mapped[str | None] = mapped_column(String(32))
    qualification: Mapped[str | None] = mapped_column(String(60))  # physician, nurse, ...
    active: Mapped[bool] = mapped_column(default=True)

    roles: Mapped[list[PractitionerRole]] = relationship(
        back_populates="practitioner", cascade="all, delete-orphan", lazy="selectin"
    )


class PractitionerRole(Base):
    __tablename__ = "practitioner_role"
    __table_args__ = (UniqueConstraint("practitioner_id", "organisation_id", "role"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioner.id", ondelete="CASCADE"))
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"), index=True)
    role: Mapped[str] = mapped_column(String(40))  # gp, cardiologist, nurse, radiologist, ...
    specialty: Mapped[str | None] = mapped_column(String(60))
    active: Mapped[bool] = mapped_column(default=True)

    practitioner: Mapped[Practitioner] = relationship(back_populates="roles")
