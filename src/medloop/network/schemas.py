"""Request and response models for organisations."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medloop.network.models import Capability, Tier

_REGION = Field(pattern=r"^\d{6}$", description="GB/T 2260 6-digit administrative division code")


class OrganisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    tier: Tier
    parent_code: str | None = None
    province_code: str = _REGION
    city_code: str = _REGION
    district_code: str = _REGION
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    capabilities: list[Capability] = []
    timezone: str = "Asia/Shanghai"

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, v: list[Capability]) -> list[Capability]:
        return sorted(set(v))


class OrganisationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    tier: str
    parent_id: uuid.UUID | None
    province_code: str
    city_code: str
    district_code: str
    latitude: float
    longitude: float
    capabilities: list[str]
    timezone: str
    active: bool
