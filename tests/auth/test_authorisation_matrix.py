"""Role × facility scope × endpoint. A user sees only patients of their organisations and those
below; everything else is 404 (no existence leak) or 403 for a missing role."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories import World, auth

# Which of the four patients (alice@CHC-A1, bob@CHC-A2, carol@CHC-B1, dan@HUB) each user sees.
VISIBLE = {
    "admin": {"alice", "bob", "carol", "dan"},
    "doc-a1": {"alice"},
    "doc-cnty-a": {"alice", "bob"},
    "doc-b1": {"carol"},
    "screener-hub": {"alice", "bob", "carol", "dan"},
    "pm-b": {"carol"},
}
NO_PATIENT_ROLE = ["partner", "device-1"]


@pytest.mark.parametrize("user", sorted(VISIBLE))
def test_search_returns_exactly_the_scope(client: TestClient, world: World, user: str) -> None:
    r = client.get("/api/v1/patients", headers=auth(client, user))
    assert r.status_code == 200
    names = {p["given_name"] for p in r.json()["items"]}
    expected = {world.patients[k].given_name for k in VISIBLE[user]}
    assert names == expected
    assert r.json()["total"] == len(expected)


@pytest.mark.parametrize("user", sorted(VISIBLE))
@pytest.mark.parametrize("patient", ["alice", "bob", "carol", "dan"])
def test_read_one_patient(client: TestClient, world: World, user: str, patient: str) -> None:
    r = client.get(f"/api/v1/patients/{world.patients[patient].id}", headers=auth(client, user))
    if patient in VISIBLE[user]:
        assert r.status_code == 200
        assert r.json()["id"] == str(world.patients[patient].id)
    else:
        assert r.status_code == 404
        assert "not found in your facility scope" in r.json()["detail"]


@pytest.mark.parametrize("user", NO_PATIENT_ROLE)
def test_roles_without_patient_access_are_forbidden(client: TestClient, world: World, user: str) -> None:
    headers = auth(client, user)
    assert client.get("/api/v1/patients", headers=headers).status_code == 403
    assert client.get(f"/api/v1/patients/{world.patients['dan'].id}", headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("user", "patient", "status"),
    [
        ("doc-a1", "alice", 200),
        ("doc-a1", "bob", 404),
        ("doc-cnty-a", "bob", 200),
        ("pm-b", "carol", 403),
        ("doc-b1", "alice", 404),
        ("admin", "carol", 200),
    ],
)
def test_update_respects_role_and_scope(
    client: TestClient, world: World, user: str, patient: str, status: int
) -> None:
    r = client.patch(
        f"/api/v1/patients/{world.patients[patient].id}",
        headers=auth(client, user),
        json={"phone": "13800000000"},
    )
    assert r.status_code == status


@pytest.mark.parametrize(
    ("user", "home", "status"),
    [
        ("doc-a1", "CHC-A1", 201),
        ("doc-a1", "CHC-A2", 403),
        ("doc-cnty-a", "CHC-A2", 201),
        ("screener-hub", "CHC-B1", 201),
        ("pm-b", "CHC-B1", 403),
        ("partner", "HUB", 403),
    ],
)
def test_create_respects_role_and_scope(
    client: TestClient, world: World, user: str, home: str, status: int
) -> None:
    body = {
        "family_name": "王",
        "given_name": "芳",
        "sex": "F",
        "birth_date": "1970-03-02",
        "province_code": "330000",
        "city_code": "330100",
        "district_code": "330122",
        "home_facility_id": str(world.org_id(home)),
    }
    assert client.post("/api/v1/patients", headers=auth(client, user), json=body).status_code == status


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/audit", None),
        ("GET", "/api/v1/users", None),
        (
            "POST",
            "/api/v1/organisations",
            {
                "code": "X",
                "name": "X",
                "tier": "primary",
                "province_code": "330000",
                "city_code": "330100",
                "district_code": "330122",
                "latitude": 30,
                "longitude": 120,
            },
        ),
    ],
)
@pytest.mark.parametrize("user", ["doc-a1", "screener-hub", "pm-b", "partner"])
def test_admin_only_endpoints(
    client: TestClient, method: str, path: str, body: dict[str, object] | None, user: str
) -> None:
    assert client.request(method, path, headers=auth(client, user), json=body).status_code == 403


def test_admin_creates_organisation_and_user(client: TestClient) -> None:
    headers = auth(client, "admin")
    org = {
        "code": "CHC-A3",
        "name": "新社区",
        "tier": "primary",
        "parent_code": "CNTY-A",
        "province_code": "330000",
        "city_code": "330100",
        "district_code": "330122",
        "latitude": 30.2,
        "longitude": 119.7,
        "capabilities": ["primary_care", "ecg", "primary_care"],
    }
    r = client.post("/api/v1/organisations", headers=headers, json=org)
    assert r.status_code == 201 and r.json()["capabilities"] == ["ecg", "primary_care"]
    # The county clinician's scope now includes the new centre.
    assert client.get("/api/v1/auth/me", headers=auth(client, "doc-cnty-a")).json()["scope_size"] == 4
    user = {
        "username": "nurse-a3",
        "password": "long-enough-pw",
        "roles": ["clinician"],
        "facility_codes": ["CHC-A3"],
    }
    assert client.post("/api/v1/users", headers=headers, json=user).status_code == 201
    assert client.post("/api/v1/users", headers=headers, json=user).status_code == 409
