"""The audit trail: every read or write of a patient's data leaves a record of who, what, which
patient, when, from where and why. Records are written in the same transaction as the access."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.auth.principal import Principal
from medloop.store.base import utcnow


def record_access(
    session: Session,
    principal: Principal,
    action: str,
    resource_type: str,
    patient_ids: Iterable[uuid.UUID | None],
    *,
    resource_id: str | None = None,
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
) -> int:
    """One audit row per patient touched (one row with no patient if none). Returns rows written."""
    now = utcnow()
    ids = list(dict.fromkeys(patient_ids)) or [None]
    rows = [
        {
            "at": now,
            "actor_id": principal.user_id,
            "actor": principal.username,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id if resource_id is not None else (str(pid) if pid else None),
            "patient_id": pid,
            "purpose": principal.purpose,
            "source": principal.source,
            "outcome": outcome,
            "detail": detail or {},
        }
        for pid in ids
    ]
    session.execute(insert(AuditEvent), rows)
    return len(rows)


def audit_query(
    *,
    patient_id: uuid.UUID | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Select[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc())
    if patient_id is not None:
        stmt = stmt.where(AuditEvent.patient_id == patient_id)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor == actor)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    return stmt
