"""OAuth2 token endpoint, revocation and token validation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from medloop.auth.security import ALGORITHM, ISSUER
from medloop.settings import DEV_SECRET
from medloop.store.base import utcnow
from tests.factories import PASSWORD, auth, token_for


def test_password_grant_issues_short_lived_bearer_token(client: TestClient) -> None:
    r = client.post(
        "/api/v1/auth/token", data={"grant_type": "password", "username": "doc-a1", "password": PASSWORD}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert "user/*.read" in body["scope"].split()
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert me["username"] == "doc-a1" and me["roles"] == ["clinician"]
    assert me["scope_size"] == 1  # CHC-A1 has nothing below it


def test_scope_includes_organisations_below(client: TestClient) -> None:
    assert client.get("/api/v1/auth/me", headers=auth(client, "doc-cnty-a")).json()["scope_size"] == 3
    assert client.get("/api/v1/auth/me", headers=auth(client, "screener-hub")).json()["scope_size"] == 6
    assert client.get("/api/v1/auth/me", headers=auth(client, "admin")).json()["scope_size"] is None


def test_client_credentials_grant_for_services(client: TestClient) -> None:
    assert token_for(client, "device-1")
    r = client.post(
        "/api/v1/auth/token", auth=("device-1", PASSWORD), data={"grant_type": "client_credentials"}
    )
    assert r.status_code == 200
    assert r.json()["scope"] == "user/Device.read user/Observation.write"


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (
            {"grant_type": "password", "username": "doc-a1", "password": "wrong-password"},
            401,
            "wrong username",
        ),
        ({"grant_type": "password", "username": "nobody", "password": PASSWORD}, 401, "wrong username"),
        ({"grant_type": "password", "username": "doc-a1"}, 400, "needs username and password"),
        ({"grant_type": "password", "username": "device-1", "password": PASSWORD}, 401, "client_credentials"),
        (
            {"grant_type": "client_credentials", "client_id": "doc-a1", "client_secret": PASSWORD},
            401,
            "password grant",
        ),
        ({"grant_type": "implicit"}, 400, "unsupported grant_type"),
        ({}, 422, "grant_type"),
    ],
)
def test_bad_token_requests(client: TestClient, data: dict[str, str], status: int, fragment: str) -> None:
    r = client.post("/api/v1/auth/token", data=data)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    assert fragment in r.json()["detail"]


def _forge(secret: str, minutes: int) -> str:
    now = utcnow()
    payload = {
        "iss": ISSUER,
        "sub": "00000000-0000-0000-0000-000000000001",
        "jti": "x",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=minutes)).timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


@pytest.mark.parametrize(
    ("make_header", "fragment"),
    [
        (lambda: None, "send an access token"),
        (lambda: "Bearer not-a-jwt", "invalid"),
        (lambda: "Basic abc", "send an access token"),
        (lambda: f"Bearer {_forge('another-secret-another-secret-another', 5)}", "invalid"),
        (lambda: f"Bearer {_forge(DEV_SECRET, -5)}", "expired"),
        (lambda: f"Bearer {_forge(DEV_SECRET, 5)}", "no longer exists"),
    ],
    ids=["none", "garbage", "basic", "wrong-key", "expired", "unknown-user"],
)
def test_bad_tokens_get_401(client: TestClient, make_header: Callable[[], str | None], fragment: str) -> None:
    header = make_header()
    headers = {"Authorization": header} if header else {}
    r = client.get("/api/v1/patients", headers=headers)
    assert r.status_code == 401
    assert fragment in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_token_is_refused(client: TestClient) -> None:
    headers = auth(client, "doc-a1")
    assert client.get("/api/v1/patients", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/revoke", headers=headers).json() == {"status": "revoked"}
    r = client.get("/api/v1/patients", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_only_admin_revokes_another_users_token(client: TestClient) -> None:
    victim = token_for(client, "doc-a1")
    r = client.post("/api/v1/auth/revoke", headers=auth(client, "doc-b1"), data={"token": victim})
    assert r.status_code == 403
    assert (
        client.post("/api/v1/auth/revoke", headers=auth(client, "admin"), data={"token": victim}).status_code
        == 200
    )
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {victim}"}).status_code == 401
