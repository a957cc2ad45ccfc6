"""Request and response bodies of the device endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medloop.devices.models import CredentialKind, DeviceKind


class DeviceIn(BaseModel):
    serial: str = Field(min_length=1, max_length=80)
    kind: DeviceKind
    model: str = ""
    manufacturer_code: str | None = None
    firmware: str | None = None
    service_username: str | None = Field(
        None, description="The service user the device logs in as over HTTP."
    )


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    serial: str
    kind: str
    model: str
    manufacturer_id: uuid.UUID | None
    firmware: str | None
    active: bool


class BindIn(BaseModel):
    patient_id: uuid.UUID
    start_at: datetime | None = Field(None, description="Default: now. Must carry a UTC offset.")


class UnbindIn(BaseModel):
    end_at: datetime | None = None


class BindingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    device_id: uuid.UUID
    patient_id: uuid.UUID
    start_at: datetime
    end_at: datetime | None
    bound_by: str
    unbound_by: str | None


class CredentialIn(BaseModel):
    kind: CredentialKind


class CredentialOut(BaseModel):
    id: uuid.UUID
    kind: str
    username: str | None
    secret: str = Field(
        description="Shown once. HTTP: send as 'Authorization: Bearer <secret>'; MQTT: password."
    )


class CredentialStatusOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    revoked_at: datetime | None


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    reading_id: uuid.UUID
    rule_id: str
    code: str
    value: float
    unit: str
    severity: str
    status: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    received_at: datetime
    channel: str
    format: str
    device_serial: str | None
    reason: str
    detail: str
    payload: dict[str, Any]
    status: str
    replay_count: int
    replayed_at: datetime | None


class ReplayIn(BaseModel):
    ids: list[uuid.UUID] | None = Field(None, description="Dead letters to replay; default: every open one.")


class ReplayOut(BaseModel):
    replayed: int
    still_failing: int
