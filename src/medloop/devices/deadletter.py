"""The dead-letter table: list what was rejected and why, and replay it after a fix."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.devices import payloads
from medloop.devices.ingest import Submitter, ingest_entries
from medloop.devices.models import DeadLetter, DeadLetterStatus
from medloop.devices.types import Item, Outcome, Reason, Rejected
from medloop.store.base import utcnow

MESSAGE_FORMAT = "message"  # a whole MQTT message that could not be parsed: {"topic", "text"}


def list_dead_letters(
    session: Session,
    *,
    status: str | None = DeadLetterStatus.OPEN,
    reason: str | None = None,
    serial: str | None = None,
    limit: int = 100,
) -> Sequence[DeadLetter]:
    stmt = select(DeadLetter).order_by(DeadLetter.received_at, DeadLetter.id).limit(limit)
    if status:
        stmt = stmt.where(DeadLetter.status == status)
    if reason:
        stmt = stmt.where(DeadLetter.reason == reason)
    if serial:
        stmt = stmt.where(DeadLetter.device_serial == serial)
    return session.scalars(stmt).all()


def _entries(letter: DeadLetter) -> list[Item | Rejected]:
    if letter.format != MESSAGE_FORMAT:
        return [payloads.parse_entry(letter.payload, 0, letter.device_serial, letter.format)]
    raw: dict[str, Any] = letter.payload
    try:
        return payloads.parse(orjson.loads(str(raw.get("text", ""))), letter.device_serial)
    except (orjson.JSONDecodeError, payloads.PayloadError) as exc:
        return [Rejected(0, MESSAGE_FORMAT, raw, letter.device_serial, Reason.MALFORMED, str(exc))]


@dataclass
class ReplayReport:
    replayed: int = 0
    still_failing: int = 0


def replay(
    session: Session, principal: Principal, ids: Sequence[uuid.UUID] | None = None, *, limit: int = 1000
) -> ReplayReport:
    """Run open dead letters (all, or those in `ids`) through the pipeline again. Those that now
    pass (stored, or already stored) are marked replayed; the others keep their updated reason."""
    stmt = select(DeadLetter).where(DeadLetter.status == DeadLetterStatus.OPEN)
    if ids is not None:
        stmt = stmt.where(DeadLetter.id.in_(list(ids)))
    report = ReplayReport()
    for letter in session.scalars(stmt.order_by(DeadLetter.received_at).limit(limit)).all():
        result = ingest_entries(
            session, _entries(letter), channel="replay", submitter=Submitter(principal), dead_letter=False
        )
        failed = [r for r in result.items if r.status is Outcome.REJECTED]
        letter.replay_count += 1
        if failed:
            letter.reason, letter.detail = str(failed[0].reason), str(failed[0].detail)[:500]
            report.still_failing += 1
        else:
            letter.status, letter.replayed_at = DeadLetterStatus.REPLAYED.value, utcnow()
            report.replayed += 1
    session.flush()
    return report
