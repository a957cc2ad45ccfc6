"""Running the pipeline against the database: one call per submission (an HTTP request, a batch of
MQTT messages, a replayed dead letter), in the caller's transaction.

Stored readings are audited (one audit row per patient per submission, action "create",
resource type "Observation"); rejected ones go to the dead-letter table with their reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain, islice
from typing import Any, cast

from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Table, insert, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.devices import payloads, pgcopy
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
    reject,
    resolve,
    to_rows,
)
from medloop.devices.types import Accepted, Item, Outcome, ReadingRow, Reason, Rejected
from medloop.people.models import Patient
from medloop.store.base import utcnow
from medloop.store.bulk import bulk_insert

READINGS = cast(Table, Reading.__table__)
ALERTS = cast(Table, DeviceAlert.__table__)
DEAD_LETTERS = cast(Table, DeadLetter.__table__)
READING_COLUMNS = [c.name for c in READINGS.columns]
assert tuple(READING_COLUMNS) == ReadingRow._fields, "ReadingRow must follow the reading table"
COPY_CHUNK = 500  # rows per write to the COPY stream


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


def copy_readings(conn: Connection, table: str, rows: Iterator[ReadingRow], copied: list[ReadingRow]) -> None:
    """COPY rows into `table` (reading, or the staging table) in PostgreSQL's binary format, a chunk
    at a time as `rows` yields them, appending each chunk to `copied` before sending it."""
    raw = conn.connection.driver_connection
    assert raw is not None
    columns = ", ".join(pgcopy.COLUMNS)
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(pgcopy.HEADER)
        while chunk := list(islice(rows, COPY_CHUNK)):
            copied.extend(chunk)
            copy.write(b"".join(pgcopy.encode(chunk)))
        copy.write(pgcopy.TRAILER)


def store_readings(session: Session, rows: Iterable[ReadingRow]) -> list[ReadingRow]:
    """Stage *store*: insert rows whose id is new; returns the rows actually inserted.

    PostgreSQL: COPY straight into the table inside a savepoint (the common case: nothing is a
    repeat), consuming `rows` as they come, so that the server checks one chunk while the caller
    produces the next. If any id already exists the COPY fails as a whole, and the rows go through
    a temporary staging table instead: COPY there, then INSERT … ON CONFLICT DO NOTHING."""
    pending = iter(rows)
    first = next(pending, None)
    if first is None:
        return []
    pending = chain([first], pending)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        copied: list[ReadingRow] = []
        try:
            with conn.begin_nested():
                copy_readings(conn, "reading", pending, copied)
            return copied
        except (IntegrityError, UniqueViolation):
            pass
        every = copied + list(pending)  # the failed COPY may have stopped before the end
        conn.execute(
            text("CREATE TEMP TABLE IF NOT EXISTS reading_stage (LIKE reading) ON COMMIT DELETE ROWS")
        )
        copy_readings(conn, "reading_stage", iter(every), [])
        cols = ", ".join(READING_COLUMNS)
        inserted = set(
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
    elif conn.dialect.name == "sqlite":
        every = list(pending)
        stmt = sqlite_insert(Reading).on_conflict_do_nothing().returning(Reading.id)
        inserted = set(conn.execute(stmt, [r._asdict() for r in every]).scalars().all())
    else:
        every = list(pending)
        existing = set(session.scalars(select(Reading.id).where(Reading.id.in_([r.id for r in every]))).all())
        inserted = {r.id for r in every if r.id not in existing}
        if inserted:
            conn.execute(insert(Reading), [r._asdict() for r in every if r.id in inserted])
    return [r for r in every if r.id in inserted]


def store_dead_letters(session: Session, rejected: Sequence[Rejected], channel: str, now: datetime) -> int:
    return bulk_insert(
        session.connection(),
        DEAD_LETTERS,
        dead_letter_rows(rejected, channel, now),
        on_conflict_ignore=True,
    )


def _patients_allowed(
    session: Session, submitter: Submitter, devices: dict[str, DeviceView]
) -> set[uuid.UUID] | None:
    """The patients of these devices the submitter may submit for; None: no restriction."""
    if not submitter.check_scope or submitter.principal.unrestricted:
        return None
    patients = {patient for device in devices.values() for _start, _end, patient in device.bindings}
    if not patients:
        return set()
    return set(
        session.scalars(
            select(Patient.id).where(
                Patient.id.in_(patients), patient_in_scope(submitter.principal, Patient.__table__.c.id)
            )
        ).all()
    )


def _authorise(
    accepted: Accepted, submitter: Submitter, allowed: set[uuid.UUID] | None
) -> Accepted | Rejected:
    item = accepted.reading.item
    if submitter.device_ids is not None and accepted.device_id not in submitter.device_ids:
        return reject(item, Reason.FORBIDDEN, "this client may not submit readings for this device")
    if allowed is not None and accepted.patient_id not in allowed:
        return reject(item, Reason.FORBIDDEN, "the device's patient is outside your facility scope")
    return accepted


def _accept(
    item: Item,
    now: datetime,
    skew: timedelta,
    devices: dict[str, DeviceView],
    submitter: Submitter,
    allowed: set[uuid.UUID] | None,
) -> Accepted | Rejected:
    """Stages normalise and validate for one reading; the first that refuses it gives the reason."""
    if submitter.serial is not None and item.device_serial != submitter.serial:
        return reject(item, Reason.SERIAL_MISMATCH, "the reading names another device than the sender")
    normalised = normalise(item)
    if isinstance(normalised, Rejected):
        return normalised
    refused = check_plausible(normalised) or check_not_future(normalised, now, skew)
    if refused is not None:
        return refused
    resolved = resolve(normalised, devices)
    return resolved if isinstance(resolved, Rejected) else _authorise(resolved, submitter, allowed)


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
    items = [e for e in entries if isinstance(e, Item)]
    rejected = [e for e in entries if isinstance(e, Rejected)]
    devices = load_devices(session, (i.device_serial for i in items if i.device_serial))
    allowed = _patients_allowed(session, submitter, devices)
    groups: list[tuple[int, list[ReadingRow]]] = []  # (item index, its rows) of accepted readings

    def accepted_groups() -> Iterator[tuple[int, list[ReadingRow]]]:
        # Lazy: the store stage pulls readings through normalise and validate while it sends
        # the rows of the previous ones to the database.
        for item in items:
            checked = _accept(item, now, skew, devices, submitter, allowed)
            if isinstance(checked, Rejected):
                rejected.append(checked)
            else:
                groups.append((item.index, to_rows(checked, now, channel)))
                yield groups[-1]

    repeats: set[int] = set()
    stored_rows = store_readings(session, deduplicate(accepted_groups(), repeats))
    unique_rows = sum(len(group) for index, group in groups if index not in repeats)
    # None: every unique row was new (the common case: no need to look ids up)
    inserted = None if len(stored_rows) == unique_rows else {r.id for r in stored_rows}
    results: dict[int, ItemResult] = {}
    for index, group in groups:
        ids = [r.id for r in group]
        # a panel's rows are inserted together
        stored = index not in repeats and (inserted is None or ids[0] in inserted)
        status = Outcome.STORED if stored else Outcome.DUPLICATE
        results[index] = ItemResult(index, status, group[0].panel_id or ids[0], ids)
    alerts = evaluate(stored_rows, rules if rules is not None else load_rules(), now)
    if alerts:
        bulk_insert(session.connection(), ALERTS, alerts, on_conflict_ignore=True)
    if stored_rows:
        record_access(
            session,
            submitter.principal,
            "create",
            "Observation",
            sorted({r.patient_id for r in stored_rows}),
            detail={"channel": channel, "readings": len(stored_rows)},
        )
    dead = store_dead_letters(session, rejected, channel, now) if dead_letter and rejected else 0
    for r in rejected:
        results[r.index] = ItemResult(r.index, Outcome.REJECTED, reason=r.reason.value, detail=r.detail)
    return IngestResult([results[i] for i in sorted(results)], len(alerts), dead, rejected)
