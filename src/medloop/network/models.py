"""Organisations of the care network."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medloop.store.base import Base, TimestampMixin, new_id


class Tier(StrEnum):
    TERTIARY_HUB = "tertiary_hub"
    SECONDARY = "secondary"  # county hospital
    PRIMARY = "primary"  # community health centre / township health centre
    VILLAGE_CLINIC = "village_clinic"
    MOBILE_UNIT = "mobile_unit"  # mobile screening van


class Capability(StrEnum):
    CHEST_PAIN_CENTER = "chest_pain_center"
    CATH_LAB = "cath_lab"
    LDCT = "ldct"
    SPIROMETRY = "spirometry"
    ENDOSCOPY = "endoscopy"
    ONCOLOGY_MDT = "oncology_mdt"
    LAB = "lab"
    PULMONARY_REHAB = "pulmonary_rehab"
    PRIMARY_CARE = "primary_care"
    ECG = "ecg"
    MMC = "mmc"  # metabolic management centre


class Organisation(TimestampMixin, Base):
    __tablename__ = "organisation"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    tier: Mapped[str] = mapped_column(String(30))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisation.id"), index=True)
    # GB/T 2260 administrative division codes (6 digits).
    province_code: Mapped[str] = mapped_column(String(6), index=True)
    city_code: Mapped[str] = mapped_column(String(6), index=True)
    district_code: Mapped[str] = mapped_column(String(6), index=True)
    latitude: Mapped[float]
    longitude: Mapped[float]
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Shanghai")
    active: Mapped[bool] = mapped_column(default=True)

    parent: Mapped[Organisation | None] = relationship(remote_side=[id])
