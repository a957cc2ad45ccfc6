"""Running the pipeline against the database: one call per submission (an HTTP request, a batch of
MQTT messages, a replayed dead letter), in the caller's transaction.

Stored readings are audited (one audit row per patient per submission, action "create",
resource type "Observation"); rejected ones go to the dead-letter table with their reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from psycopg.errors import UniqueViolation
from sqlalchemy import MetaData, Table, insert, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.devices import payloads
from medloop.devices.alerts import AlertRule, evaluate, load_rules
from medloop.devices.models import DeadLetter, Device, DeviceAlert, DeviceBinding, Reading
from medloop.devices.pipeline import (
    DEFAULT_CLOCK_SKEW,
    DeviceView,
    check_not_future,
    check_plausible,
    dead_letter_rows,
    deduplicate,
    gc_paused,
    normalise,
    resolve,
    to_rows,
)
from medloop.devices.types import Accepted, Item, Outcome, Reason, Rejected
from medloop.people.models import Patient
from medloop.store.base import utcnow
from medloop.store.bulk import bulk_insert, copy_rows

READINGS = cast(Table, Reading.__table__)
ALERTS = cast(Table, DeviceAlert.__table__)
DEAD_LETTERS = cast(Table, DeadLetter.__table__)
READING_COLUMNS = [c.name for c in READINGS.columns]
_STAGE = Table("reading_stage", MetaData())  # a per-connection temporary table on PostgreSQL


@dataclass(frozen=True)
class Submitter:
    """Who submits, and what they may submit for."""

    principal: Principal
    serial: str | None = None  # the one device the transport vouches for (MQTT topic, device token)
    device_ids: frozenset[uuid.UUID] | None = None  # devices this client may submit for; None: any
    check_scope: bool = False  # people: the patient must be in the principal's facility scope


@dataclass
class ItemResult:
    index: int
    status: Outcome
    id: uuid.UUID | None = None  # the reading's id (a panel's id for panels)
    reading_ids: list[uuid.UUID] = field(default_factory=list)
    reason: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The per-item outcome for a response body (ids stay UUIDs: orjson writes them natively)."""
        doc: dict[str, Any] = {"index": self.index, "status": self.status.value}
        if self.id is not None:
            doc["id"] = self.id
            doc["reading_ids"] = self.reading_ids
        if self.reason is not None:
            doc["reason"], doc["detail"] = self.reason, self.detail
        return doc


@dataclass
class IngestResult:
    items: list[ItemResult]
    alerts: int = 0
    dead_lettered: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def count(self, status: Outcome) -> int:
        return sum(1 for r in self.items if r.status is status)

    def summary(self) -> dict[str, int]:
        return {
            "received": len(self.items),
            "stored": self.count(Outcome.STORED),
            "duplicate": self.count(Outcome.DUPLICATE),
            "rejected": self.count(Outcome.REJECTED),
            "alerts": self.alerts,
        }


def load_devices(session: Session, serials: Iterable[str]) -> dict[str, DeviceView]:
    wanted = sorted(set(serials))
    if not wanted:
        return {}
    found: dict[str, tuple[uuid.UUID, bool]] = {}
    bindings: dict[str, list[tuple[datetime, datetime | None, uuid.UUID]]] = {}
    rows = session.execute(
        select(
            Device.serial,
            Device.id,
            Device.active,
            DeviceBinding.start_at,
            DeviceBinding.end_at,
            DeviceBinding.patient_id,
        )
        .outerjoin(DeviceBinding, DeviceBinding.device_id == Device.id)
        .where(Device.serial.in_(wanted))
    )
    for serial, device_id, active, start, end, patient in rows:
        found[serial] = (device_id, active)
        if start is not None:
            bindings.setdefault(serial, []).append((start, end, patient))
    return {
        serial: DeviceView(device_id, active, bindings.get(serial, []))
        for serial, (device_id, active) in found.items()
    }


def store_readings(session: Session, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Stage *store*: insert rows whose id is new; returns the ids actually inserted.

    PostgreSQL: COPY straight into the table inside a savepoint (the common case: nothing is a
    repeat). If any id already exists the COPY fails as a whole, and the rows go through a
    temporary staging table instead: COPY there, then INSERT … ON CONFLICT DO NOTHING."""
    if not rows:
        return set()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        values = [[r[c] for c in READING_COLUMNS] for r in rows]
        try:
            with conn.begin_nested():
                copy_rows(conn, READINGS, READING_COLUMNS, values)
            return {r["id"] for r in rows}
        except (IntegrityError, UniqueViolation):
            pass
        conn.execute(
            text("CREATE TEMP TABLE IF NOT EXISTS reading_stage (LIKE reading) ON COMMIT DELETE ROWS")
        )
        copy_rows(conn, _STAGE, READING_COLUMNS, values)
        cols = ", ".join(READING_COLUMNS)
        inserted = (
            conn.execute(
                text(
                    f"INSERT INTO reading ({cols}) SELECT {cols} FROM reading_stage ORDER BY id "
                    "ON CONFLICT (id) DO NOTHING RETURNING id"
                )
            )
            .scalars()
            .all()
        )
        conn.execute(text("TRUNCATE reading_stage"))
        return set(inserted)
    if conn.dialect.name == "sqlite":
        stmt = sqlite_insert(Reading).on_conflict_do_nothing().returning(Reading.id)
        return set(conn.execute(stmt, list(rows)).scalars().all())
    existing = set(session.scalars(select(Reading.id).where(Reading.id.in_([r["id"] for r in rows]))).all())
    fresh = [r for r in rows if r["id"] not in existing]
    if fresh:
        conn.execute(insert(Reading), fresh)
    return {r["id"] for r in fresh}


def store_dead_letters(session: Session, rejected: Sequence[Rejected], channel: str, now: datetime) -> int:
    return bulk_insert(
        session.connection(),
        DEAD_LETTERS,
        dead_letter_rows(rejected, channel, now),
        on_conflict_ignore=True,
    )


def _authorise(accepted: list[Accepted], submitter: Submitter, session: Session) -> list[Accepted | Rejected]:
    allowed_patients: set[uuid.UUID] | None = None
    if submitter.check_scope and not submitter.principal.unrestricted:
        patients = {a.patient_id for a in accepted}
        allowed_patients = (
            set(
                session.scalars(
                    select(Patient.id).where(
                        Patient.id.in_(patients),
                        patient_in_scope(submitter.principal, Patient.__table__.c.id),
                    )
                ).all()
            )
            if patients
            else set()
        )
    out: list[Accepted | Rejected] = []
    for a in accepted:
        item = a.reading.item
        if submitter.device_ids is not None and a.device_id not in submitter.device_ids:
            out.append(
                _rejected(item, Reason.FORBIDDEN, "this client may not submit readings for this device")
            )
        elif allowed_patients is not None and a.patient_id not in allowed_patients:
            out.append(
                _rejected(item, Reason.FORBIDDEN, "the device's patient is outside your facility scope")
            )
        else:
            out.append(a)
    return out


def _rejected(item: Item, reason: Reason, detail: str) -> Rejected:
    return Rejected(item.index, item.format, item.raw, item.device_serial, reason, detail)


def ingest(
    session: Session,
    doc: Any,
    *,
    channel: str,
    submitter: Submitter,
    now: datetime | None = None,
    rules: Sequence[AlertRule] | None = None,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
    dead_letter: bool = True,
) -> IngestResult:
    """Parse a decoded JSON document and run every reading in it through the pipeline.
    Raises `payloads.PayloadError` if the document as a whole is not understood."""
    with gc_paused():
        entries = payloads.parse(doc, submitter.serial)
    return ingest_entries(
        session,
        entries,
        channel=channel,
        submitter=submitter,
        now=now,
        rules=rules,
        skew=skew,
        dead_letter=dead_letter,
    )


def ingest_entries(
    session: Session,
    entries: Sequence[Item | Rejected],
    *,
    channel: str,
    submitter: Submitter,
    now: datetime | None = None,
    rules: Sequence[AlertRule] | None = None,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
    dead_letter: bool = True,
) -> IngestResult:
    """Run parsed entries through normalise → validate → de-duplicate → store → evaluate."""
    with gc_paused():
        return _run(session, entries, channel, submitter, now or utcnow(), rules, skew, dead_letter)


def _run(
    session: Session,
    entries: Sequence[Item | Rejected],
    channel: str,
    submitter: Submitter,
    now: datetime,
    rules: Sequence[AlertRule] | None,
    skew: timedelta,
    dead_letter: bool,
) -> IngestResult:
    results: dict[int, ItemResult] = {}
    rejected: list[Rejected] = []
    valid = []
    for entry in entries:
        if (
            isinstance(entry, Item)
            and submitter.serial is not None
            and entry.device_serial != submitter.serial
        ):
            entry = _rejected(
                entry, Reason.SERIAL_MISMATCH, "the reading names another device than the sender"
            )
        if isinstance(entry, Item):
            norm = normalise(entry)
            checked = (
                norm
                if isinstance(norm, Rejected)
                else (check_plausible(norm) or check_not_future(norm, now, skew) or norm)
            )
            entry = checked if isinstance(checked, Rejected) else entry
            if not isinstance(checked, Rejected):
                valid.append(checked)
        if isinstance(entry, Rejected):
            rejected.append(entry)
    devices = load_devices(session, (n.item.device_serial for n in valid if n.item.device_serial))
    resolved = [resolve(n, devices) for n in valid]
    accepted = [a for a in resolved if isinstance(a, Accepted)]
    rejected.extend(r for r in resolved if isinstance(r, Rejected))
    authorised = _authorise(accepted, submitter, session)
    accepted = [a for a in authorised if isinstance(a, Accepted)]
    rejected.extend(r for r in authorised if isinstance(r, Rejected))

    groups = [(a.reading.item.index, to_rows(a, now, channel)) for a in accepted]
    rows, repeats = deduplicate(groups)
    inserted = store_readings(session, rows)
    for index, group in groups:
        ids = [r["id"] for r in group]
        stored = index not in repeats and ids[0] in inserted  # a panel's rows are inserted together
        status = Outcome.STORED if stored else Outcome.DUPLICATE
        results[index] = ItemResult(index, status, group[0]["panel_id"] or ids[0], ids)
    stored_rows = [r for r in rows if r["id"] in inserted]
    alerts = evaluate(stored_rows, rules if rules is not None else load_rules(), now)
    if alerts:
        bulk_insert(session.connection(), ALERTS, alerts, on_conflict_ignore=True)
    if stored_rows:
        record_access(
            session,
            submitter.principal,
            "create",
            "Observation",
            sorted({r["patient_id"] for r in stored_rows}),
            detail={"channel": channel, "readings": len(stored_rows)},
        )
    dead = store_dead_letters(session, rejected, channel, now) if dead_letter and rejected else 0
    for r in rejected:
        results[r.index] = ItemResult(r.index, Outcome.REJECTED, reason=r.reason.value, detail=r.detail)
    return IngestResult([results[i] for i in sorted(results)], len(alerts), dead, rejected)
