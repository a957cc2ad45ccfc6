"""Tables of the FHIR layer.

- `fhir_resource`: resources that have no medloop table of their own (Condition,
  QuestionnaireResponse; the programme types are mapped in `mapping/programs.py`). The JSON is
  kept whole; what search needs is extracted into columns (patient, date, status) and into
  `fhir_token` rows (code, category, identifier, ...).
- `fhir_bulk_job`: asynchronous bulk export and import requests (kick-off, progress, manifest).
- An index on `reading.panel_id`, so an Observation that is a panel (a blood-pressure reading)
  is found by its id in one index look-up; and one on `reading (effective_at, code)` for the
  searches that name no patient: `date`, `code` + `date`, `_sort=-date` (newest first, read
  backwards from the index). Searches by patient use `ix_reading_patient_code_effective`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from medloop.devices.models import Reading
from medloop.store.base import Base, JSONType, utcnow


class FhirResource(Base):
    __tablename__ = "fhir_resource"
    __table_args__ = (
        Index("ix_fhir_resource_type_patient_date", "resource_type", "patient_id", "date"),
        Index("ix_fhir_resource_type_updated", "resource_type", "last_updated"),
    )

    resource_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(default=1)
    last_updated: Mapped[datetime] = mapped_column(default=utcnow)
    deleted: Mapped[bool] = mapped_column(default=False)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"))
    date: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any]]


class FhirToken(Base):
    """One searchable token of a stored resource: (parameter, system, code). System '' = none."""

    __tablename__ = "fhir_token"
    __table_args__ = (Index("ix_fhir_token_type_param_code", "resource_type", "param", "code"),)

    resource_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    param: Mapped[str] = mapped_column(String(40), primary_key=True)
    system: Mapped[str] = mapped_column(String(200), primary_key=True)
    code: Mapped[str] = mapped_column(String(200), primary_key=True)


class BulkJob(Base):
    """A bulk export or import: who asked, what for, how far it is, and what it produced."""

    __tablename__ = "fhir_bulk_job"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # export | import
    level: Mapped[str] = mapped_column(String(10))  # system | patient | group (exports)
    group_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(12))  # accepted, running, completed, failed, cancelled
    progress: Mapped[str] = mapped_column(String(200), default="")
    request_url: Mapped[str] = mapped_column(String(1000))
    actor_id: Mapped[uuid.UUID | None]
    actor: Mapped[str] = mapped_column(String(80))
    params: Mapped[dict[str, Any]]
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


# Observations that are panels are read by their panel id (see medloop.fhir.resources.observation).
Index("ix_reading_panel_id", Reading.__table__.c.panel_id)
Index("ix_reading_effective_code", Reading.__table__.c.effective_at, Reading.__table__.c.code)
