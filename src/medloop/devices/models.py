"""Devices, their patient bindings and credentials; readings, alerts and dead letters.

Readings: one row per measured quantity. A blood-pressure panel (LOINC 85354-9) is stored as two
rows, systolic 8480-6 and diastolic 8462-4, sharing a `panel_id` (the panel's own deterministic id),
so the FHIR layer can rebuild one Observation with two components, and per-code queries stay simple.
Every id is deterministic (see `devices.pipeline.reading_id`): a retry inserts nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medloop.store.base import Base, TimestampMixin, new_id, utcnow


class DeviceKind(StrEnum):
    BP_MONITOR = "bp_monitor"
    GLUCOMETER = "glucometer"
    PULSE_OXIMETER = "pulse_oximeter"
    SPIROMETER = "spirometer"
    SCALE = "scale"
    ECG_PATCH = "ecg_patch"
    THERMOMETER = "thermometer"
    MULTI = "multi"


class CredentialKind(StrEnum):
    TOKEN = "token"  # HTTP: Authorization: Bearer <credential id>.<secret>
    MQTT = "mqtt"  # broker username (the serial) and password


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"


class Device(TimestampMixin, Base):
    __tablename__ = "device"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    serial: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    model: Mapped[str] = mapped_column(String(100), default="")
    manufacturer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisation.id"))
    firmware: Mapped[str | None] = mapped_column(String(40))
    # The service user the device authenticates as over HTTP (client-credentials grant), if any.
    service_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)

    bindings: Mapped[list[DeviceBinding]] = relationship(
        back_populates="device", order_by="DeviceBinding.start_at", lazy="selectin"
    )


class DeviceBinding(Base):
    """The device measured this patient from `start_at` until `end_at` (open: still bound)."""

    __tablename__ = "device_binding"
    __table_args__ = (Index("ix_device_binding_device_start", "device_id", "start_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    bound_by: Mapped[str] = mapped_column(String(80))
    unbound_by: Mapped[str | None] = mapped_column(String(80))

    device: Mapped[Device] = relationship(back_populates="bindings")


class DeviceCredential(Base):
    """A secret a device presents (argon2-hashed); revoked credentials stay for the record."""

    __tablename__ = "device_credential"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    username: Mapped[str | None] = mapped_column(String(80))  # MQTT username (the serial)
    secret_hash: Mapped[str] = mapped_column(String(200))  # argon2id, verified by medloop
    # MQTT only: the same secret as PBKDF2-SHA512 in Mosquitto's password-file format, so that
    # `medloop devices broker-config` can write the broker's password file without the secret.
    broker_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(80))


class Reading(Base):
    __tablename__ = "reading"
    __table_args__ = (Index("ix_reading_patient_code_effective", "patient_id", "code", "effective_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # deterministic: (device, code, effective_at)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device.id"), index=True)
    code: Mapped[str] = mapped_column(String(20))  # LOINC
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))  # UCUM
    effective_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    panel_id: Mapped[uuid.UUID | None]  # shared by the components of one panel (85354-9)
    channel: Mapped[str] = mapped_column(String(10))  # http, mqtt, fhir, replay


class DeviceAlert(Base):
    """A dangerous reading, for the patient's care team (the programmes turn these into tasks)."""

    __tablename__ = "device_alert"
    __table_args__ = (Index("ix_device_alert_status_created", "status", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # deterministic: (reading, rule)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    reading_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reading.id"), index=True)
    rule_id: Mapped[str] = mapped_column(String(60))
    code: Mapped[str] = mapped_column(String(20))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=AlertStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))


class DeadLetter(Base):
    """A reading (or message) that could not be accepted, with why, and the raw payload to replay.
    The id is derived from the payload, so the same bad message delivered twice is kept once."""

    __tablename__ = "device_dead_letter"
    __table_args__ = (Index("ix_device_dead_letter_status_received", "status", "received_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(10))
    format: Mapped[str] = mapped_column(String(20))
    device_serial: Mapped[str | None] = mapped_column(String(80), index=True)
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12), default=DeadLetterStatus.OPEN)
    replay_count: Mapped[int] = mapped_column(default=0)
    replayed_at: Mapped[datetime | None]
