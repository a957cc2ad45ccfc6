"""FastAPI dependencies: a database session per request and the authenticated principal.

@router.get("/things")
def list_things(session: DbSession, principal: CurrentPrincipal) -> ...:
    principal.require_role(Role.CLINICIAN)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.auth.service import principal_for_token
from medloop.errors import Unauthorized
from medloop.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def db_session(request: Request) -> Iterator[Session]:
    """One session per request; committed when the endpoint returns, rolled back on error."""
    session: Session = request.app.state.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(db_session)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "send an access token: 'Authorization: Bearer <token>' (get one at /api/v1/auth/token)"
        )
    return token.strip()


def current_principal(request: Request, session: DbSession) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal, _claims = principal_for_token(
        session,
        request.app.state.settings,
        bearer_token(request),
        source=request.client.host if request.client else None,
        purpose=request.headers.get("x-purpose-of-use"),
    )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    """Dependency factory: the principal must hold one of `roles` (admins always pass)."""

    def check(principal: CurrentPrincipal) -> Principal:
        principal.require_role(*roles)
        return principal

    return check
