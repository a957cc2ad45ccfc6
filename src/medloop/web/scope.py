"""The viewer's scope for the dashboards' aggregates."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.network.models import Organisation


def for_reads(session: Session, principal: Principal) -> Principal:
    """The principal, unrestricted when its scope holds every organisation: every patient has a
    home facility, so `patient_in_scope` admits every patient, and a region-wide manager's reads
    need not check it once per row (one indexed look for an organisation outside the scope).
    The same rows either way; audit records do not depend on the scope (who, purpose, source)."""
    if principal.scope is None:
        return principal
    outside = session.scalar(
        select(Organisation.id).where(Organisation.id.not_in(list(principal.scope))).limit(1)
    )
    return principal if outside is not None else replace(principal, scope=None)
