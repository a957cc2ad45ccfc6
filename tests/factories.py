"""Builders shared by tests: a small care network with known distances, users per role, tokens.

Network (codes; parent in brackets):
    HUB      tertiary hub, chest_pain_center cath_lab ldct oncology_mdt lab spirometry
    CNTY-A   county hospital [HUB], lab spirometry ecg
    CHC-A1   community centre [CNTY-A], primary_care ecg
    CHC-A2   community centre [CNTY-A], primary_care
    CNTY-B   county hospital [HUB], lab ldct
    CHC-B1   community centre [CNTY-B], primary_care
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.app import create_app
from medloop.auth.models import Role
from medloop.auth.service import create_user
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.settings import Settings

PASSWORD = "correct-horse-battery"

NETWORK = [
    # code, tier, parent, district, lat, lon, capabilities
    (
        "HUB",
        "tertiary_hub",
        None,
        "330102",
        30.25,
        120.17,
        ["chest_pain_center", "cath_lab", "ldct", "oncology_mdt", "lab", "spirometry", "primary_care"],
    ),
    ("CNTY-A", "secondary", "HUB", "330122", 30.05, 119.95, ["lab", "spirometry", "ecg"]),
    ("CHC-A1", "primary", "CNTY-A", "330122", 30.00, 119.90, ["primary_care", "ecg"]),
    ("CHC-A2", "primary", "CNTY-A", "330122", 30.10, 119.80, ["primary_care"]),
    ("CNTY-B", "secondary", "HUB", "330127", 29.60, 118.95, ["lab", "ldct"]),
    ("CHC-B1", "primary", "CNTY-B", "330127", 29.55, 118.90, ["primary_care"]),
]


@dataclass
class World:
    orgs: dict[str, Organisation]
    patients: dict[str, Patient] = field(default_factory=dict)

    def org_id(self, code: str) -> uuid.UUID:
        return self.orgs[code].id


def build_network(session: Session) -> World:
    orgs: dict[str, Organisation] = {}
    for code, tier, parent, district, lat, lon, caps in NETWORK:
        org = Organisation(
            code=code,
            name=f"{code} hospital",
            tier=tier,
            parent_id=orgs[parent].id if parent else None,
            province_code="330000",
            city_code="330100",
            district_code=district,
            latitude=lat,
            longitude=lon,
            capabilities=caps,
        )
        session.add(org)
        session.flush()
        orgs[code] = org
    return World(orgs)


def add_patient(
    session: Session, world: World, key: str, facility: str, *, sex: str = "M", birth: date = date(1960, 5, 1)
) -> Patient:
    fam, given = key[:1].upper(), key[1:] or "x"
    patient = Patient(
        family_name=fam,
        given_name=given,
        name=fam + given,
        sex=sex,
        birth_date=birth,
        province_code="330000",
        city_code="330100",
        district_code=world.orgs[facility].district_code,
        home_facility_id=world.org_id(facility),
        consent={"data_processing": True},
    )
    session.add(patient)
    session.flush()
    world.patients[key] = patient
    return patient


def add_user(
    session: Session, username: str, roles: list[str], facilities: list[str], *, is_service: bool = False
) -> None:
    create_user(session, username, PASSWORD, roles, facilities, is_service=is_service)


def standard_world(session: Session) -> World:
    """Network + one patient per community centre + users: admin; clinicians at CHC-A1, CNTY-A
    (scope: CNTY-A, CHC-A1, CHC-A2) and CHC-B1; a screener at HUB (everything below the hub);
    a programme manager at CNTY-B; a partner and a device service user."""
    world = build_network(session)
    for key, fac in [("alice", "CHC-A1"), ("bob", "CHC-A2"), ("carol", "CHC-B1"), ("dan", "HUB")]:
        add_patient(session, world, key, fac)
    add_user(session, "admin", [Role.ADMIN], [])
    add_user(session, "doc-a1", [Role.CLINICIAN], ["CHC-A1"])
    add_user(session, "doc-cnty-a", [Role.CLINICIAN], ["CNTY-A"])
    add_user(session, "doc-b1", [Role.CLINICIAN], ["CHC-B1"])
    add_user(session, "screener-hub", [Role.SCREENER], ["HUB"])
    add_user(session, "pm-b", [Role.PROGRAMME_MANAGER], ["CNTY-B"])
    add_user(session, "partner", [Role.PARTNER], ["HUB"])
    add_user(session, "device-1", [Role.DEVICE], [], is_service=True)
    session.commit()
    return world


def make_client(engine: Engine) -> TestClient:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), log_level="WARNING")
    return TestClient(create_app(settings, engine=engine), raise_server_exceptions=False)


def token_for(client: TestClient, username: str, password: str = PASSWORD) -> str:
    service = username.startswith("device")
    data = (
        {"grant_type": "client_credentials", "client_id": username, "client_secret": password}
        if service
        else {"grant_type": "password", "username": username, "password": password}
    )
    response = client.post("/api/v1/auth/token", data=data)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def auth(client: TestClient, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(client, username)}"}
