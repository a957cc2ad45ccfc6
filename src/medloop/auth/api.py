"""/api/v1/auth (OAuth2 token and revocation endpoints), /api/v1/users and /api/v1/audit."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from sqlalchemy import func, select

from medloop.auth import service
from medloop.auth.audit import audit_query
from medloop.auth.deps import CurrentPrincipal, DbSession, bearer_token, get_settings_dep
from medloop.auth.models import Role, User
from medloop.auth.schemas import AuditEventOut, MeOut, TokenOut, UserIn, UserOut
from medloop.auth.security import decode_token
from medloop.errors import BadRequest, Unauthorized
from medloop.pagination import Page, PageParams, page_params
from medloop.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("malformed HTTP Basic credentials", error="invalid_client") from exc
    return client_id, secret


@router.post("/auth/token", response_model=TokenOut)
def token(
    request: Request,
    session: DbSession,
    settings: Annotated[Settings, Depends(get_settings_dep)],
    grant_type: Annotated[str, Form()],
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
) -> TokenOut:
    """OAuth2 token endpoint: `password` grant for people, `client_credentials` for services and
    devices (client id and secret in the form or as HTTP Basic)."""
    if grant_type == "password":
        if not username or not password:
            raise BadRequest("the password grant needs username and password", error="invalid_request")
        user = service.authenticate(session, username, password)
        if user.is_service:
            raise Unauthorized(
                "service accounts use the client_credentials grant", error="unauthorized_client"
            )
    elif grant_type == "client_credentials":
        basic = _basic_credentials(request)
        cid, secret = basic if basic else (client_id, client_secret)
        if not cid or not secret:
            raise BadRequest(
                "the client_credentials grant needs client_id and client_secret", error="invalid_request"
            )
        user = service.authenticate(session, cid, secret)
        if not user.is_service:
            raise Unauthorized("people log in with the password grant", error="unauthorized_client")
    else:
        raise BadRequest(
            f"unsupported grant_type {grant_type!r}; use password or client_credentials",
            error="unsupported_grant_type",
        )
    issued = service.grant_token(session, settings, user, scope)
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in, scope=issued.scope)


@router.post("/auth/revoke", status_code=status.HTTP_200_OK)
def revoke(
    request: Request,
    session: DbSession,
    settings: Annotated[Settings, Depends(get_settings_dep)],
    token: Annotated[str | None, Form()] = None,
) -> dict[str, str]:
    """Revoke a token (RFC 7009): the one in the form, or the caller's own bearer token."""
    caller = decode_token(settings.secret_key, bearer_token(request))
    target = decode_token(settings.secret_key, token) if token else caller
    if target.subject != caller.subject:
        principal, _ = service.principal_for_token(
            session, settings, bearer_token(request), source=None, purpose=None
        )
        principal.require_role(Role.ADMIN)
    service.revoke_token(session, target)
    return {"status": "revoked"}


@router.get("/auth/me", response_model=MeOut)
def me(principal: CurrentPrincipal) -> MeOut:
    return MeOut(
        username=principal.username,
        roles=sorted(principal.roles),
        facilities=sorted(principal.facilities),
        scope_size=None if principal.scope is None else len(principal.scope),
        smart_scopes=sorted(principal.smart_scopes),
        purpose=principal.purpose,
    )


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(data: UserIn, session: DbSession, principal: CurrentPrincipal) -> UserOut:
    principal.require_role(Role.ADMIN)
    user = service.create_user(
        session,
        data.username,
        data.password,
        [r.value for r in data.roles],
        data.facility_codes,
        display_name=data.display_name,
        is_service=data.is_service,
    )
    return UserOut.model_validate(user)


@router.get("/users", response_model=Page[UserOut])
def list_users(
    session: DbSession, principal: CurrentPrincipal, page: Annotated[PageParams, Depends(page_params)]
) -> Page[UserOut]:
    principal.require_role(Role.ADMIN)

    total = session.scalar(select(func.count()).select_from(User)) or 0
    rows = session.scalars(select(User).order_by(User.username).limit(page.limit).offset(page.offset)).all()
    return Page.of([UserOut.model_validate(u) for u in rows], total, page)


@router.get("/audit", response_model=Page[AuditEventOut])
def list_audit(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    patient_id: uuid.UUID | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEventOut]:
    """The audit trail (admins only)."""
    principal.require_role(Role.ADMIN)

    stmt = audit_query(patient_id=patient_id, actor=actor, since=since, until=until)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(page.limit).offset(page.offset)).all()
    return Page.of([AuditEventOut.model_validate(r) for r in rows], total, page)
