"""Users (people and services), their facilities, revoked tokens, and the append-only audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DDL, JSON, BigInteger, ForeignKey, Index, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medloop.store.base import Base, TimestampMixin, new_id, utcnow


class Role(StrEnum):
    ADMIN = "admin"
    PROGRAMME_MANAGER = "programme_manager"
    CLINICIAN = "clinician"
    SCREENER = "screener"
    DEVICE = "device"
    PARTNER = "partner"
    CAMPUS_MANAGER = "campus_manager"
    INVESTOR = "investor"


class User(TimestampMixin, Base):
    """A person who logs in (password grant) or a service/device client (client-credentials grant)."""

    __tablename__ = "app_user"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_service: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioner.id"))

    facilities: Mapped[list[UserFacility]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class UserFacility(Base):
    """A user works at these organisations; their scope is these and everything below them."""

    __tablename__ = "user_facility"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"), primary_key=True)


class RevokedToken(Base):
    __tablename__ = "revoked_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what to which patient's data, when, from where and why. Append-only: the database
    refuses UPDATE and DELETE (triggers below), and so does the ORM."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_patient_at", "patient_id", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[uuid.UUID | None]
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(20))  # read, search, create, update, delete, export
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[uuid.UUID | None]
    purpose: Mapped[str] = mapped_column(String(40))
    source: Mapped[str | None] = mapped_column(String(64))  # client address or "cli"
    outcome: Mapped[str] = mapped_column(String(20), default="success")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


AUDIT_GUARD_SQL = {
    "sqlite": [
        "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
        "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$",
        "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    ],
}
AUDIT_GUARD_DROP_SQL = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_event_no_update",
        "DROP TRIGGER IF EXISTS audit_event_no_delete",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event",
        "DROP FUNCTION IF EXISTS audit_event_append_only()",
    ],
}

for _dialect, _statements in AUDIT_GUARD_SQL.items():
    for _sql in _statements:
        event.listen(AuditEvent.__table__, "after_create", DDL(_sql).execute_if(dialect=_dialect))


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_change(*_: Any) -> None:
    raise PermissionError("audit_event is append-only")
