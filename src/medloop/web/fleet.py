"""Figures of the device fleet page: the devices bound to patients in the viewer's scope, when each
was last heard from, readings per minute over the last hour, and dead letters by reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.devices.models import DeadLetter, DeadLetterStatus, Device, DeviceBinding, Reading
from medloop.store.base import utcnow

ONLINE_WITHIN = timedelta(minutes=10)
RATE_MINUTES = 60
MAX_LISTED = 200


@dataclass(frozen=True)
class DeviceRow:
    serial: str
    kind: str
    model: str
    last_seen: datetime | None
    readings_last_hour: int
    online: bool


@dataclass(frozen=True)
class Fleet:
    total: int
    online: int
    devices: list[DeviceRow]
    per_minute: dict[str, list[Any]]
    dead_letters: list[tuple[str, int]]
    dead_letters_total: int
    computed_at: datetime


def _visible_devices(session: Session, principal: Principal) -> list[tuple[uuid.UUID, str, str, str]]:
    stmt = select(Device.id, Device.serial, Device.kind, Device.model).where(Device.active.is_(True))
    if principal.scope is not None:
        bound = select(DeviceBinding.device_id).where(
            DeviceBinding.end_at.is_(None),
            patient_in_scope(principal, DeviceBinding.__table__.c.patient_id),
        )
        stmt = stmt.where(Device.id.in_(bound))
    return [tuple(r) for r in session.execute(stmt).all()]  # type: ignore[misc]


def minute_of(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI')
    return func.strftime("%Y-%m-%dT%H:%M", column)


def build_fleet(session: Session, principal: Principal, now: datetime | None = None) -> Fleet:
    now = now or utcnow()
    devices = _visible_devices(session, principal)
    ids = [d[0] for d in devices]
    hour_ago = now - timedelta(minutes=RATE_MINUTES)
    seen: dict[uuid.UUID, tuple[datetime | None, int]] = {}
    minutes = [(hour_ago + timedelta(minutes=i + 1)).strftime("%Y-%m-%dT%H:%M") for i in range(RATE_MINUTES)]
    counts = dict.fromkeys(minutes, 0)
    if ids:
        recent = func.sum(case((Reading.received_at >= hour_ago, 1), else_=0))
        for device_id, last, n in session.execute(
            select(Reading.device_id, func.max(Reading.received_at), recent)
            .where(Reading.device_id.in_(ids))
            .group_by(Reading.device_id)
        ).all():
            seen[device_id] = (last, int(n or 0))
        minute = minute_of(Reading.received_at, session.get_bind().dialect.name)
        for m, n in session.execute(
            select(minute, func.count())
            .where(Reading.device_id.in_(ids), Reading.received_at >= hour_ago)
            .group_by(minute)
        ).all():
            if m in counts:
                counts[m] += int(n)
    rows = []
    for device_id, serial, kind, model in devices:
        last, n = seen.get(device_id, (None, 0))
        rows.append(DeviceRow(serial, kind, model, last, n, last is not None and now - last <= ONLINE_WITHIN))
    rows.sort(key=lambda r: (r.last_seen is None, -(r.last_seen.timestamp() if r.last_seen else 0), r.serial))
    letters = dead_letter_reasons(session, principal, [d[1] for d in devices])
    return Fleet(
        total=len(rows),
        online=sum(r.online for r in rows),
        devices=rows[:MAX_LISTED],
        per_minute={"minutes": minutes, "readings": [counts[m] for m in minutes]},
        dead_letters=letters,
        dead_letters_total=sum(n for _, n in letters),
        computed_at=now,
    )


def dead_letter_reasons(session: Session, principal: Principal, serials: list[str]) -> list[tuple[str, int]]:
    """Open dead letters by reason: all of them for admins and programme managers (the rejected
    messages of unknown devices included), else those of the viewer's devices."""
    stmt = select(DeadLetter.reason, func.count()).where(DeadLetter.status == DeadLetterStatus.OPEN)
    if not (principal.unrestricted or principal.has_role("programme_manager")):
        stmt = stmt.where(DeadLetter.device_serial.in_(serials))
    rows = session.execute(stmt.group_by(DeadLetter.reason)).all()
    return sorted(((str(r), int(n)) for r, n in rows), key=lambda x: (-x[1], x[0]))
