"""Figures of the device fleet page: the devices bound to patients in the viewer's scope, when each
was last heard from, readings per minute over the last hour, and dead letters by reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, true
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.auth.scope import for_reads, patient_in_scope, scope_patient_ids
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


SMALL_SCOPE = 50  # facilities: up to this, a restricted user's devices are found from their patients


def _visible_devices(session: Session, principal: Principal) -> Select[uuid.UUID]:
    """The ids of the active devices the principal sees: for a restricted user, those bound to a
    patient in their scope (`patient_in_scope` decides). For a small scope the bindings are looked
    up from the patients the rule can admit (of the scope's facilities, or holding one of their
    medical record numbers) instead of checking every binding of the region."""
    if principal.scope is None:
        return select(Device.id.label("device_id")).where(Device.active.is_(True))
    binding = DeviceBinding.__table__.c
    reader = for_reads(session, principal)  # a whole-network scope: bound to anyone, no per-row check
    stmt = (
        select(binding.device_id)
        .join(Device, Device.id == binding.device_id)
        .where(Device.active.is_(True), binding.end_at.is_(None))
        .where(patient_in_scope(reader, binding.patient_id))
    )
    if len(principal.scope) <= SMALL_SCOPE:
        stmt = stmt.where(binding.patient_id.in_(scope_patient_ids(principal.scope)))
    return stmt.distinct()


def minute_of(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI')
    return func.strftime("%Y-%m-%dT%H:%M", column)


def build_fleet(session: Session, principal: Principal, now: datetime | None = None) -> Fleet:
    """Everything about the last hour is read from the readings received in it (an index range on
    `received_at`), never from a device's whole history: the devices heard from in the hour are
    listed first, newest first; the list is filled up to MAX_LISTED with the other devices by
    serial, whose last reading is looked up one device at a time."""
    now = now or utcnow()
    visible = _visible_devices(session, principal).subquery()
    total = session.scalar(select(func.count()).select_from(visible)) or 0
    hour_ago = now - timedelta(minutes=RATE_MINUTES)
    heard = {
        device_id: (last, int(n))
        for device_id, last, n in session.execute(
            select(Reading.device_id, func.max(Reading.received_at), func.count())
            .where(Reading.received_at >= hour_ago, Reading.device_id.in_(select(visible.c.device_id)))
            .group_by(Reading.device_id)
        ).all()
    }
    minutes = [(hour_ago + timedelta(minutes=i + 1)).strftime("%Y-%m-%dT%H:%M") for i in range(RATE_MINUTES)]
    counts = dict.fromkeys(minutes, 0)
    if heard:
        minute = minute_of(Reading.received_at, session.get_bind().dialect.name)
        for m, n in session.execute(
            select(minute, func.count())
            .where(Reading.received_at >= hour_ago, Reading.device_id.in_(list(heard)))
            .group_by(minute)
        ).all():
            if m in counts:
                counts[m] += int(n)
    listed = sorted(heard, key=lambda d: heard[d][0], reverse=True)[:MAX_LISTED]
    rows = _device_rows(session, listed, heard, now)
    if len(rows) < MAX_LISTED:
        others = (
            select(Device.id)
            .where(
                Device.id.in_(select(visible.c.device_id)),
                Device.id.not_in(list(heard)) if heard else true(),
            )
            .order_by(Device.serial)
            .limit(MAX_LISTED - len(rows))
        )
        rows += _device_rows(session, list(session.scalars(others)), heard, now)
    serials = select(Device.serial).where(Device.id.in_(select(visible.c.device_id)))
    letters = dead_letter_reasons(session, principal, serials)
    return Fleet(
        total=total,
        online=sum(1 for last, _ in heard.values() if now - last <= ONLINE_WITHIN),
        devices=rows,
        per_minute={"minutes": minutes, "readings": [counts[m] for m in minutes]},
        dead_letters=letters,
        dead_letters_total=sum(n for _, n in letters),
        computed_at=now,
    )


def _device_rows(
    session: Session,
    ids: list[uuid.UUID],
    heard: dict[uuid.UUID, tuple[datetime, int]],
    now: datetime,
) -> list[DeviceRow]:
    """The rows of these devices, in this order; the last reading of those not heard from in the
    last hour is looked up (the newest of each device's readings)."""
    if not ids:
        return []
    last_reading = (
        select(func.max(Reading.received_at)).where(Reading.device_id == Device.id).scalar_subquery()
    )
    found = {
        r[0]: r
        for r in session.execute(
            select(Device.id, Device.serial, Device.kind, Device.model, last_reading).where(
                Device.id.in_(ids)
            )
        ).all()
    }
    out = []
    for device_id in ids:
        _, serial, kind, model, last = found[device_id]
        n = heard.get(device_id, (None, 0))[1]
        out.append(DeviceRow(serial, kind, model, last, n, last is not None and now - last <= ONLINE_WITHIN))
    return out


def dead_letter_reasons(
    session: Session, principal: Principal, serials: Select[str]
) -> list[tuple[str, int]]:
    """Open dead letters by reason: all of them for admins and programme managers (the rejected
    messages of unknown devices included), else those of the viewer's devices."""
    stmt = select(DeadLetter.reason, func.count()).where(DeadLetter.status == DeadLetterStatus.OPEN)
    if not (principal.unrestricted or principal.has_role("programme_manager")):
        stmt = stmt.where(DeadLetter.device_serial.in_(serials))
    rows = session.execute(stmt.group_by(DeadLetter.reason)).all()
    return sorted(((str(r), int(n)) for r, n in rows), key=lambda x: (-x[1], x[0]))
