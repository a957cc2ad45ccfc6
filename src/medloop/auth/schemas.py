"""Request and response models for tokens, users and the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medloop.auth.models import Role


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=200)
    roles: list[Role] = Field(min_length=1)
    facility_codes: list[str] = []
    display_name: str = ""
    is_service: bool = False


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    display_name: str
    roles: list[str]
    is_service: bool
    active: bool


class MeOut(BaseModel):
    username: str
    roles: list[str]
    facilities: list[uuid.UUID]
    scope_size: int | None = Field(description="Organisations in scope; null means unrestricted")
    smart_scopes: list[str]
    purpose: str


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    purpose: str
    source: str | None
    outcome: str
    detail: dict[str, Any]
