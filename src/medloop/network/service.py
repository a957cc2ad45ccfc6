"""Use cases for organisations."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medloop.errors import BadRequest, Conflict, NotFound
from medloop.network.models import Organisation
from medloop.network.schemas import OrganisationIn
from medloop.pagination import PageParams


def create_organisation(session: Session, data: OrganisationIn) -> Organisation:
    if session.scalar(select(Organisation.id).where(Organisation.code == data.code)):
        raise Conflict(f"organisation code {data.code!r} is already used")
    parent_id = None
    if data.parent_code:
        parent_id = session.scalar(select(Organisation.id).where(Organisation.code == data.parent_code))
        if parent_id is None:
            raise BadRequest(f"parent organisation {data.parent_code!r} does not exist")
    org = Organisation(
        **data.model_dump(exclude={"parent_code", "capabilities", "tier"}),
        tier=data.tier.value,
        capabilities=[c.value for c in data.capabilities],
        parent_id=parent_id,
    )
    session.add(org)
    session.flush()
    return org


def get_organisation(session: Session, org_id: uuid.UUID) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} does not exist")
    return org


def search_organisations(
    session: Session,
    page: PageParams,
    *,
    name: str | None = None,
    tier: str | None = None,
    district_code: str | None = None,
    capability: str | None = None,
) -> tuple[list[Organisation], int]:
    stmt = select(Organisation)
    if name:
        stmt = stmt.where(Organisation.name.ilike(f"%{name}%"))
    if tier:
        stmt = stmt.where(Organisation.tier == tier)
    if district_code:
        stmt = stmt.where(Organisation.district_code == district_code)
    rows = list(session.scalars(stmt.order_by(Organisation.code)).all())
    if capability:  # capabilities are a small JSON list; filtered here for portability
        rows = [o for o in rows if capability in (o.capabilities or [])]
    total = len(rows)
    return rows[page.offset : page.offset + page.limit], total


def count_organisations(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Organisation)) or 0
