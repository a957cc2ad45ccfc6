"""Browser sessions: the login form exchanges a username and password for an access token issued
by the auth service (`authenticate`, `grant_token`) and keeps it in an HttpOnly, SameSite=Strict
cookie; every page resolves the cookie to a principal (`principal_for_token`: revocation and the
user's facility scope are checked on each request); logout revokes the token.

Forms carry a CSRF token bound to the session (an HMAC of the token id under the signing key);
fetch() calls send it as `X-CSRF-Token`. The login form, which has no session yet, uses a random
double-submit cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from contextlib import suppress
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from medloop.auth import service
from medloop.auth.deps import DbSession
from medloop.auth.models import User
from medloop.auth.principal import Principal
from medloop.auth.security import TokenClaims, decode_token
from medloop.errors import Forbidden, Problem, Unauthorized
from medloop.settings import Settings

SESSION_COOKIE = "medloop_session"
LOGIN_CSRF_COOKIE = "medloop_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# A clinic shift: a browser session lasts longer than an API access token (15 minutes by default).
SESSION_MINUTES = 8 * 60


class LoginRequired(Unauthorized):
    """No valid session: pages answer with a redirect to the login form."""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def log_in(session: Session, settings: Settings, username: str, password: str) -> tuple[User, str]:
    """Check the password and issue a session token; raises Unauthorized on failure."""
    user = service.authenticate(session, username, password)
    if user.is_service:
        raise Unauthorized("service accounts cannot log in to the dashboards")
    minutes = max(settings.access_token_minutes, SESSION_MINUTES)
    issued = service.grant_token(
        session, settings.model_copy(update={"access_token_minutes": minutes}), user, None
    )
    return user, issued.access_token


def start_session(request: Request, response: Response, token: str, settings: Settings) -> None:
    minutes = max(settings.access_token_minutes, SESSION_MINUTES)
    set_cookie(request, response, SESSION_COOKIE, token, minutes * 60)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")


def end_session(session: Session, settings: Settings, request: Request, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with suppress(Problem):  # an expired or forged cookie: nothing to revoke
            service.revoke_token(session, decode_token(settings.secret_key, token))
    response.delete_cookie(SESSION_COOKIE, path="/")


def csrf_for(settings: Settings, claims: TokenClaims) -> str:
    mac = hmac.new(settings.secret_key.encode(), f"csrf|{claims.jti}".encode(), hashlib.sha256)
    return mac.hexdigest()[:40]


def login_csrf(request: Request) -> str:
    """The login form's double-submit token (from its cookie, or a new one)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def check_login_csrf(request: Request, submitted: str | None) -> None:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise Forbidden("the login form has expired; reload the page and try again")


class WebSession:
    """The logged-in user of a page request: principal, token claims and the CSRF token."""

    def __init__(self, principal: Principal, claims: TokenClaims, csrf: str, display_name: str) -> None:
        self.principal = principal
        self.claims = claims
        self.csrf = csrf
        self.display_name = display_name

    def check_csrf(self, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(self.csrf, submitted):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again")


def web_session(request: Request, session: DbSession) -> WebSession:
    cached: WebSession | None = getattr(request.state, "web_session", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired("please log in")
    settings: Settings = request.app.state.settings
    try:
        principal, claims = service.principal_for_token(
            session, settings, token, source=request.client.host if request.client else None, purpose=None
        )
    except Unauthorized as exc:
        raise LoginRequired(exc.detail) from None
    user = session.get(User, claims.subject)
    web = WebSession(principal, claims, csrf_for(settings, claims), user.display_name if user else "")
    request.state.web_session = web
    request.state.principal = principal
    return web


CurrentWeb = Annotated[WebSession, Depends(web_session)]


async def csrf_checked(request: Request, web: CurrentWeb) -> WebSession:
    """For state-changing requests: the CSRF token from the header or the form must match."""
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    web.check_csrf(submitted)
    return web


CheckedWeb = Annotated[WebSession, Depends(csrf_checked)]
