"""Password hashing (argon2id) and short-lived signed access tokens (JWT, HS256)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from medloop.errors import Unauthorized
from medloop.settings import get_settings
from medloop.store.base import utcnow

ISSUER = "medloop"
ALGORITHM = "HS256"


@lru_cache(maxsize=1)
def _hasher() -> tuple[PasswordHasher, str]:
    """The hasher with the configured cost, and the hash of a random password that is verified
    against when a user does not exist, so response time does not reveal which usernames exist."""
    settings = get_settings()
    hasher = PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib)
    return hasher, hasher.hash(uuid.uuid4().hex)


def hash_password(password: str) -> str:
    return _hasher()[0].hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    hasher, dummy = _hasher()
    try:
        return hasher.verify(password_hash or dummy, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class TokenClaims:
    subject: uuid.UUID
    username: str
    jti: str
    expires_at: datetime
    scope: frozenset[str]


def issue_token(
    secret: str, user_id: uuid.UUID, username: str, minutes: int, scope: frozenset[str] = frozenset()
) -> tuple[str, TokenClaims]:
    now = utcnow()
    claims = TokenClaims(user_id, username, uuid.uuid4().hex, now + timedelta(minutes=minutes), scope)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(user_id),
        "name": username,
        "jti": claims.jti,
        "iat": int(now.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "scope": " ".join(sorted(scope)),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def decode_token(secret: str, token: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub", "jti"]}
        )
        return TokenClaims(
            uuid.UUID(payload["sub"]),
            str(payload.get("name", "")),
            str(payload["jti"]),
            datetime.fromtimestamp(payload["exp"]).astimezone(),
            frozenset(str(payload.get("scope", "")).split()),
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("access token has expired; request a new one at /api/v1/auth/token") from exc
    except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
        raise Unauthorized("access token is invalid") from exc
