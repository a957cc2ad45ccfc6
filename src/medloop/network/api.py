"""/api/v1/organisations: the care network. Organisations are not patient data: any
authenticated user may read them; admins change them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from medloop.auth.deps import CurrentPrincipal, DbSession
from medloop.auth.models import Role
from medloop.network import service
from medloop.network.models import Capability, Tier
from medloop.network.schemas import OrganisationIn, OrganisationOut
from medloop.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/api/v1/organisations", tags=["network"])


@router.get("", response_model=Page[OrganisationOut])
def list_organisations(
    session: DbSession,
    _principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    name: str | None = None,
    tier: Tier | None = None,
    district_code: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    capability: Capability | None = None,
) -> Page[OrganisationOut]:
    rows, total = service.search_organisations(
        session,
        page,
        name=name,
        tier=tier.value if tier else None,
        district_code=district_code,
        capability=capability.value if capability else None,
    )
    return Page.of([OrganisationOut.model_validate(o) for o in rows], total, page)


@router.get("/{org_id}", response_model=OrganisationOut)
def read_organisation(org_id: uuid.UUID, session: DbSession, _principal: CurrentPrincipal) -> OrganisationOut:
    return OrganisationOut.model_validate(service.get_organisation(session, org_id))


@router.post("", response_model=OrganisationOut, status_code=status.HTTP_201_CREATED)
def create_organisation(
    data: OrganisationIn, session: DbSession, principal: CurrentPrincipal
) -> OrganisationOut:
    principal.require_role(Role.ADMIN)
    return OrganisationOut.model_validate(service.create_organisation(session, data))
