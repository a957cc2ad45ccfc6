"""Patients: create with identifiers (hashed national ID, MRNs), de-duplication, search, update, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.people.identifiers import national_id_check_char
from medloop.people.models import Patient, PatientIdentifier
from tests.factories import World, auth

NATIONAL_ID = "33010219600501" + "123"
NATIONAL_ID += national_id_check_char(NATIONAL_ID)


def _body(world: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "family_name": "张",
        "given_name": "伟",
        "sex": "M",
        "birth_date": "1960-05-01",
        "phone": "13812345678",
        "province_code": "330000",
        "city_code": "330100",
        "district_code": "330122",
        "home_facility_id": str(world.org_id("CHC-A1")),
        "national_id": NATIONAL_ID,
        "mrns": [{"organisation_code": "CHC-A1", "value": "A1-0001"}],
    }
    return body | overrides


def test_national_id_is_stored_only_hashed_and_masked(
    client: TestClient, engine: Engine, world: World
) -> None:
    r = client.post("/api/v1/patients", headers=auth(client, "doc-a1"), json=_body(world))
    assert r.status_code == 201, r.text
    ids = {i["system"]: i["display"] for i in r.json()["identifiers"]}
    assert ids == {"national-id": NATIONAL_ID[:4] + "*" * 10 + NATIONAL_ID[-4:], "mrn": "A1-0001"}
    with Session(engine) as s:
        stored = s.scalars(select(PatientIdentifier.value_key)).all()
    assert all(NATIONAL_ID not in v for v in stored)
    assert NATIONAL_ID not in r.text


def test_search_by_identifier_and_name(client: TestClient, world: World) -> None:
    headers = auth(client, "doc-cnty-a")
    created = client.post("/api/v1/patients", headers=headers, json=_body(world)).json()
    for params in ({"identifier": NATIONAL_ID}, {"identifier": "A1-0001"}, {"name": "张伟"}, {"name": "张"}):
        items = client.get("/api/v1/patients", headers=headers, params=params).json()["items"]
        assert [p["id"] for p in items] == [created["id"]], params
    assert client.get("/api/v1/patients", headers=headers, params={"identifier": "nope"}).json()["total"] == 0


def test_duplicate_national_id_is_a_conflict(client: TestClient, engine: Engine, world: World) -> None:
    headers = auth(client, "doc-a1")
    first = client.post("/api/v1/patients", headers=headers, json=_body(world)).json()
    again = client.post("/api/v1/patients", headers=headers, json=_body(world, mrns=[]))
    assert again.status_code == 409
    assert again.json()["existing_patient_id"] == first["id"]
    # Outside the scope, the conflict does not reveal who it is.
    other = client.post(
        "/api/v1/patients",
        headers=auth(client, "doc-b1"),
        json=_body(world, mrns=[], home_facility_id=str(world.org_id("CHC-B1"))),
    )
    assert other.status_code == 409 and other.json()["existing_patient_id"] is None


def test_pagination(client: TestClient, world: World) -> None:
    headers = auth(client, "screener-hub")
    first = client.get("/api/v1/patients", headers=headers, params={"limit": 3}).json()
    second = client.get("/api/v1/patients", headers=headers, params={"limit": 3, "offset": 3}).json()
    assert (first["total"], len(first["items"]), first["next_offset"]) == (4, 3, 3)
    assert (len(second["items"]), second["next_offset"]) == (1, None)
    assert {p["id"] for p in first["items"]}.isdisjoint({p["id"] for p in second["items"]})


def test_age_is_computed_from_birth_date(client: TestClient, world: World) -> None:
    r = client.get(f"/api/v1/patients/{world.patients['alice'].id}", headers=auth(client, "doc-a1")).json()
    assert r["birth_date"] == "1960-05-01" and 60 <= r["age"] <= 80


BAD_BODIES: list[tuple[str, dict[str, Any] | str, int, str]] = [
    ("malformed json", '{"family_name": ', 400, "not valid JSON"),
    ("wrong type", {"birth_date": "yesterday"}, 422, "birth_date"),
    ("unknown field", {"favourite_colour": "blue"}, 422, "favourite_colour"),
    ("bad sex", {"sex": "X"}, 422, "sex"),
    ("bad national id", {"national_id": "330102196005011230"}, 400, "check character"),
    ("unknown mrn org", {"mrns": [{"organisation_code": "NOPE", "value": "1"}]}, 400, "NOPE"),
    ("future birth", {"birth_date": "2999-01-01"}, 400, "future"),
    ("missing field", {"family_name": None}, 422, "family_name"),
]


@pytest.mark.parametrize(("case", "body", "status", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_4xx_and_writes_nothing(
    client: TestClient,
    engine: Engine,
    world: World,
    case: str,
    body: dict[str, Any] | str,
    status: int,
    fragment: str,
) -> None:
    headers = auth(client, "doc-a1")
    if isinstance(body, str):
        r = client.post(
            "/api/v1/patients", headers=headers | {"content-type": "application/json"}, content=body
        )
    else:
        payload = {k: v for k, v in (_body(world) | body).items() if v is not None}
        r = client.post("/api/v1/patients", headers=headers, json=payload)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert fragment in r.text
    assert "Traceback" not in r.text
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 4
        assert s.scalar(select(func.count()).select_from(PatientIdentifier)) == 0


def test_oversized_body_is_413(engine: Engine, world: World) -> None:
    from fastapi.testclient import TestClient as TC

    from medloop.app import create_app
    from medloop.settings import Settings

    app = create_app(
        Settings(database_url=str(engine.url), max_body_bytes=1000, log_level="WARNING"), engine=engine
    )
    with TC(app) as small:
        r = small.post(
            "/api/v1/patients",
            content=b"{" + b" " * 5000 + b"}",
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 413 and "exceeds 1000 bytes" in r.json()["detail"]


def test_unknown_endpoint_and_method(client: TestClient) -> None:
    assert client.get("/api/v1/nothing").status_code == 404
    r = client.delete("/api/v1/organisations")
    assert r.status_code == 405 and r.headers["content-type"].startswith("application/problem+json")
