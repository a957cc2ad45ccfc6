"""Device registry use cases: register, bind and unbind, credentials and their revocation,
device authentication, alerts."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.models import Role, User
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.auth.security import hash_password, verify_password
from medloop.devices.broker import INGESTER_USERNAME, mosquitto_hash
from medloop.devices.models import (
    AlertStatus,
    CredentialKind,
    Device,
    DeviceAlert,
    DeviceBinding,
    DeviceCredential,
    DeviceKind,
)
from medloop.errors import BadRequest, Conflict, NotFound, Unauthorized
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.store.base import utcnow

TOKEN_PREFIX = "mldt"


def register_device(
    session: Session,
    serial: str,
    kind: str,
    *,
    model: str = "",
    manufacturer_code: str | None = None,
    firmware: str | None = None,
    service_username: str | None = None,
) -> Device:
    serial = serial.strip()
    if not serial or "/" in serial or "+" in serial or "#" in serial or len(serial) > 80:
        raise BadRequest(
            "serial must be 1–80 characters without '/', '+' or '#' (it is part of an MQTT topic)"
        )
    if kind not in {k.value for k in DeviceKind}:
        raise BadRequest(f"unknown device kind {kind!r}; known: {', '.join(k.value for k in DeviceKind)}")
    if session.scalar(select(Device.id).where(Device.serial == serial)):
        raise Conflict(f"device {serial!r} is already registered")
    manufacturer_id = None
    if manufacturer_code:
        manufacturer_id = session.scalar(
            select(Organisation.id).where(Organisation.code == manufacturer_code)
        )
        if manufacturer_id is None:
            raise BadRequest(f"unknown organisation code {manufacturer_code!r}")
    service_user_id = None
    if service_username:
        user = session.scalar(select(User).where(User.username == service_username))
        if user is None or not user.is_service or Role.DEVICE not in user.roles:
            raise BadRequest(f"{service_username!r} is not a service user with the device role")
        service_user_id = user.id
    device = Device(
        serial=serial,
        kind=kind,
        model=model,
        manufacturer_id=manufacturer_id,
        firmware=firmware,
        service_user_id=service_user_id,
    )
    session.add(device)
    session.flush()
    return device


def get_device(session: Session, serial: str) -> Device:
    device = session.scalar(select(Device).where(Device.serial == serial))
    if device is None:
        raise NotFound(f"no device with serial {serial!r}")
    return device


def _visible_patient(session: Session, principal: Principal, patient_id: uuid.UUID) -> None:
    found = session.scalar(
        select(Patient.id).where(
            Patient.id == patient_id, patient_in_scope(principal, Patient.__table__.c.id)
        )
    )
    if found is None:
        raise NotFound("no such patient in your facility scope")


def open_binding(device: Device) -> DeviceBinding | None:
    return next((b for b in device.bindings if b.end_at is None), None)


def bind(
    session: Session,
    principal: Principal,
    serial: str,
    patient_id: uuid.UUID,
    start_at: datetime | None = None,
) -> DeviceBinding:
    """Bind the device to a patient from `start_at` (default now), ending its current binding."""
    device = get_device(session, serial)
    _visible_patient(session, principal, patient_id)
    start_at = start_at or utcnow()
    if device.bindings and start_at <= device.bindings[-1].start_at:
        raise Conflict("a binding must start after the device's latest binding started")
    current = open_binding(device)
    if current is not None:
        current.end_at, current.unbound_by = start_at, principal.username
    binding = DeviceBinding(
        device_id=device.id, patient_id=patient_id, start_at=start_at, bound_by=principal.username
    )
    session.add(binding)
    device.bindings.append(binding)
    session.flush()
    record_access(
        session, principal, "create", "DeviceUseStatement", [patient_id], resource_id=str(binding.id)
    )
    return binding


def unbind(
    session: Session, principal: Principal, serial: str, end_at: datetime | None = None
) -> DeviceBinding:
    device = get_device(session, serial)
    current = open_binding(device)
    if current is None:
        raise NotFound(f"device {serial!r} is not bound to a patient")
    _visible_patient(session, principal, current.patient_id)
    end_at = end_at or utcnow()
    if end_at <= current.start_at:
        raise BadRequest("the binding cannot end before it started")
    current.end_at, current.unbound_by = end_at, principal.username
    session.flush()
    record_access(
        session, principal, "update", "DeviceUseStatement", [current.patient_id], resource_id=str(current.id)
    )
    return current


@dataclass(frozen=True)
class IssuedCredential:
    credential: DeviceCredential
    username: str | None
    secret: str  # shown once, never stored


def issue_credential(session: Session, principal: Principal, serial: str, kind: str) -> IssuedCredential:
    device = get_device(session, serial)
    if kind == CredentialKind.TOKEN:
        cred_id = uuid.uuid4()
        secret = secrets.token_urlsafe(32)
        cred = DeviceCredential(
            id=cred_id,
            device_id=device.id,
            kind=kind,
            secret_hash=hash_password(secret),
            created_by=principal.username,
        )
        presented = f"{TOKEN_PREFIX}.{cred_id.hex}.{secret}"
        username = None
    elif kind == CredentialKind.MQTT:
        presented = secrets.token_urlsafe(24)
        username = device.serial
        cred = DeviceCredential(
            device_id=device.id,
            kind=kind,
            username=username,
            secret_hash=hash_password(presented),
            broker_hash=mosquitto_hash(presented),
            created_by=principal.username,
        )
    else:
        raise BadRequest(f"unknown credential kind {kind!r}; use token or mqtt")
    session.add(cred)
    session.flush()
    return IssuedCredential(cred, username, presented)


def revoke_credential(session: Session, principal: Principal, credential_id: uuid.UUID) -> DeviceCredential:
    cred = session.get(DeviceCredential, credential_id)
    if cred is None:
        raise NotFound("no such credential")
    if cred.revoked_at is None:
        cred.revoked_at, cred.revoked_by = utcnow(), principal.username
        session.flush()
    return cred


# Verified tokens: sha256(token) -> credential id, so argon2 runs once per token per process.
# Revocation is still checked on every request (a primary-key lookup).
_verified: dict[str, uuid.UUID] = {}


def authenticate_device_token(session: Session, token: str) -> Device:
    prefix, _, rest = token.partition(".")
    cred_hex, _, secret = rest.partition(".")
    try:
        cred_id = uuid.UUID(hex=cred_hex)
    except ValueError:
        raise Unauthorized("device token is malformed") from None
    if prefix != TOKEN_PREFIX or not secret:
        raise Unauthorized("device token is malformed")
    cred = session.get(DeviceCredential, cred_id)
    key = hashlib.sha256(token.encode()).hexdigest()
    known = _verified.get(key) == cred_id
    if (
        cred is None
        or cred.kind != CredentialKind.TOKEN
        or not (known or verify_password(cred.secret_hash, secret))
    ):
        raise Unauthorized("device token is invalid")
    if cred.revoked_at is not None:
        raise Unauthorized("device credential has been revoked")
    device = session.get(Device, cred.device_id)
    if device is None or not device.active:
        raise Unauthorized("device is deactivated")
    if len(_verified) > 10_000:
        _verified.clear()
    _verified[key] = cred_id
    return device


def device_principal(device: Device, source: str | None) -> Principal:
    return Principal(
        None,
        f"device:{device.serial}",
        frozenset({Role.DEVICE.value}),
        scope=frozenset(),
        source=source,
        purpose="treatment",
    )


def broker_entries(session: Session, ingester_hash: str | None = None) -> list[tuple[str, str]]:
    """(username, mosquitto hash) of every live MQTT credential, for the broker's password file."""
    rows = session.execute(
        select(DeviceCredential.username, DeviceCredential.broker_hash)
        .join(Device, Device.id == DeviceCredential.device_id)
        .where(
            DeviceCredential.kind == CredentialKind.MQTT,
            DeviceCredential.revoked_at.is_(None),
            Device.active.is_(True),
        )
        .order_by(DeviceCredential.username, DeviceCredential.created_at)
    ).all()
    entries = [(str(user), str(hashed)) for user, hashed in rows if user and hashed]
    return ([(INGESTER_USERNAME, ingester_hash)] if ingester_hash else []) + entries


def alerts_query(principal: Principal, status: str | None = None) -> Select[DeviceAlert]:
    stmt = select(DeviceAlert).where(patient_in_scope(principal, DeviceAlert.__table__.c.patient_id))
    if status is not None:
        stmt = stmt.where(DeviceAlert.status == status)
    return stmt.order_by(DeviceAlert.created_at.desc(), DeviceAlert.id)


def acknowledge_alert(session: Session, principal: Principal, alert_id: uuid.UUID) -> DeviceAlert:
    alert = session.scalar(alerts_query(principal).where(DeviceAlert.id == alert_id))
    if alert is None:
        raise NotFound("no such alert in your facility scope")
    if alert.status == AlertStatus.OPEN:
        alert.status, alert.acknowledged_at, alert.acknowledged_by = (
            AlertStatus.ACKNOWLEDGED.value,
            utcnow(),
            principal.username,
        )
        session.flush()
    record_access(session, principal, "update", "DeviceAlert", [alert.patient_id], resource_id=str(alert.id))
    return alert
