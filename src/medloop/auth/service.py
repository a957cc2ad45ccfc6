"""Use cases for users, login, tokens and principals."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.models import RevokedToken, Role, User, UserFacility
from medloop.auth.principal import PURPOSES, Principal
from medloop.auth.scope import descendants
from medloop.auth.security import TokenClaims, decode_token, hash_password, issue_token, verify_password
from medloop.errors import BadRequest, Conflict, Unauthorized
from medloop.network.models import Organisation
from medloop.settings import Settings

# SMART-style scopes granted by default per role (the FHIR layer narrows by these).
DEFAULT_SMART_SCOPES = {
    Role.ADMIN: {"system/*.read", "system/*.write", "user/*.read", "user/*.write"},
    Role.PROGRAMME_MANAGER: {"user/*.read"},
    Role.CLINICIAN: {"user/*.read", "user/*.write"},
    Role.SCREENER: {
        "user/Patient.read",
        "user/Patient.write",
        "user/RiskAssessment.write",
        "user/Observation.write",
        "user/QuestionnaireResponse.write",
    },
    Role.DEVICE: {"user/Observation.write", "user/Device.read"},
}


def create_user(
    session: Session,
    username: str,
    password: str,
    roles: Iterable[str],
    facility_codes: Iterable[str] = (),
    *,
    display_name: str = "",
    is_service: bool = False,
    practitioner_id: uuid.UUID | None = None,
) -> User:
    role_set = sorted({str(r) for r in roles})
    unknown = set(role_set) - {r.value for r in Role}
    if unknown:
        raise BadRequest(
            f"unknown role(s): {', '.join(sorted(unknown))}; known: {', '.join(r.value for r in Role)}"
        )
    if len(password) < 8:
        raise BadRequest("password must have at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"user {username!r} already exists")
    codes = list(facility_codes)
    orgs = session.scalars(select(Organisation).where(Organisation.code.in_(codes))).all() if codes else []
    missing = set(codes) - {o.code for o in orgs}
    if missing:
        raise BadRequest(f"unknown organisation code(s): {', '.join(sorted(missing))}")
    if Role.ADMIN not in role_set and not orgs and not is_service:
        raise BadRequest("a user who is not an admin needs at least one facility")
    user = User(
        username=username,
        password_hash=hash_password(password),
        roles=role_set,
        display_name=display_name or username,
        is_service=is_service,
        practitioner_id=practitioner_id,
        facilities=[UserFacility(organisation_id=o.id) for o in orgs],
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if not verify_password(user.password_hash if user else None, password) or user is None or not user.active:
        raise Unauthorized("wrong username or password")
    return user


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"


def grant_token(session: Session, settings: Settings, user: User, requested_scope: str | None) -> IssuedToken:
    allowed: set[str] = set()
    for role in user.roles:
        allowed |= DEFAULT_SMART_SCOPES.get(Role(role), set())
    scope = frozenset(allowed if not requested_scope else set(requested_scope.split()) & allowed)
    if requested_scope and not scope:
        raise BadRequest("none of the requested scopes is granted to this user", code="invalid_scope")
    token, _claims = issue_token(
        settings.secret_key, user.id, user.username, settings.access_token_minutes, scope
    )
    return IssuedToken(token, settings.access_token_minutes * 60, " ".join(sorted(scope)))


def revoke_token(session: Session, claims: TokenClaims) -> None:
    if session.get(RevokedToken, claims.jti) is None:
        session.add(RevokedToken(jti=claims.jti, expires_at=claims.expires_at))
        session.flush()


def principal_for_token(
    session: Session, settings: Settings, token: str, *, source: str | None, purpose: str | None
) -> tuple[Principal, TokenClaims]:
    claims = decode_token(settings.secret_key, token)
    if session.get(RevokedToken, claims.jti) is not None:
        raise Unauthorized("access token has been revoked")
    user = session.get(User, claims.subject)
    if user is None or not user.active:
        raise Unauthorized("the user of this token no longer exists or is disabled")
    return principal_for_user(
        session, user, source=source, purpose=purpose, smart_scopes=claims.scope, token_id=claims.jti
    ), claims


def principal_for_user(
    session: Session,
    user: User,
    *,
    source: str | None = None,
    purpose: str | None = None,
    smart_scopes: frozenset[str] = frozenset(),
    token_id: str | None = None,
) -> Principal:
    if purpose is not None and purpose not in PURPOSES:
        raise BadRequest(f"unknown purpose of use {purpose!r}; use one of: {', '.join(sorted(PURPOSES))}")
    facilities = frozenset(f.organisation_id for f in user.facilities)
    unrestricted = Role.ADMIN in user.roles
    return Principal(
        user_id=user.id,
        username=user.username,
        roles=frozenset(user.roles),
        facilities=facilities,
        scope=None if unrestricted else descendants(session, facilities),
        smart_scopes=smart_scopes,
        source=source,
        purpose=purpose or "treatment",
        token_id=token_id,
    )
