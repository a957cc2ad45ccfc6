"""Fixtures for the dashboards: the standard world plus device readings, alerts, risk assessments
and dead letters with known counts, and a browser-like client that logs in through the form."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.devices.models import DeadLetter, Device, DeviceAlert, DeviceBinding, Reading
from medloop.programs import service
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow
from medloop.web.overview import overview_cache
from tests.factories import PASSWORD, World, make_client, standard_world


@dataclass
class Activity:
    world: World
    # alice (CHC-A1): one device, 6 BP panels (the last one critical → an open alert), glucose
    # bob (CHC-A2): one device, 2 BP panels below target; carol (CHC-B1): no device
    devices: dict[str, str]


def _bp(
    patient_id: uuid.UUID, device_id: uuid.UUID, at_minutes: int, sbp: float, dbp: float
) -> list[Reading]:
    at = utcnow() - timedelta(minutes=at_minutes)
    panel = uuid.uuid4()
    return [
        Reading(
            id=uuid.uuid4(),
            patient_id=patient_id,
            device_id=device_id,
            code=code,
            value=value,
            unit="mm[Hg]",
            effective_at=at,
            received_at=at,
            panel_id=panel,
            channel="http",
        )
        for code, value in (("8480-6", sbp), ("8462-4", dbp))
    ]


def seed_activity(session: Session, world: World) -> Activity:
    now = utcnow()
    devices: dict[str, str] = {}
    for key, serial in (("alice", "BP-ALICE"), ("bob", "BP-BOB")):
        device = Device(serial=serial, kind="bp_monitor", model="test")
        session.add(device)
        session.flush()
        session.add(
            DeviceBinding(
                device_id=device.id,
                patient_id=world.patients[key].id,
                start_at=now - timedelta(days=30),
                bound_by="test",
            )
        )
        devices[key] = serial
    session.flush()
    alice, bob = world.patients["alice"], world.patients["bob"]
    alice_dev = session.query(Device).filter_by(serial="BP-ALICE").one()
    bob_dev = session.query(Device).filter_by(serial="BP-BOB").one()
    rows: list[Reading] = []
    for i, (s, d) in enumerate([(150, 95), (148, 92), (145, 90), (142, 88), (139, 85)]):
        rows += _bp(alice.id, alice_dev.id, 60 * 24 * (10 - i), s, d)
    critical = _bp(alice.id, alice_dev.id, 5, 186, 112)
    rows += critical
    rows += _bp(bob.id, bob_dev.id, 30, 128, 80) + _bp(bob.id, bob_dev.id, 3, 126, 78)
    glucose_at = now - timedelta(days=2)
    rows.append(
        Reading(
            id=uuid.uuid4(),
            patient_id=alice.id,
            device_id=alice_dev.id,
            code="14771-0",
            value=6.2,
            unit="mmol/L",
            effective_at=glucose_at,
            received_at=glucose_at,
            panel_id=None,
            channel="http",
        )
    )
    session.add_all(rows)
    session.flush()
    session.add(
        DeviceAlert(
            id=uuid.uuid4(),
            patient_id=alice.id,
            reading_id=critical[0].id,
            rule_id="bp-critical-systolic",
            code="8480-6",
            value=186,
            unit="mm[Hg]",
            severity="critical",
            status="open",
            created_at=now - timedelta(minutes=5),
        )
    )
    for key, category in (("alice", "high"), ("bob", "low"), ("carol", "intermediate")):
        session.add(
            RiskAssessment(
                patient_id=world.patients[key].id,
                model="china_par",
                model_version="t",
                score=0.1,
                category=category,
                reasons=[],
                flags=[],
                assessed_at=now,
                source="test",
            )
        )
    for n, reason in enumerate(["unknown_unit", "unknown_unit", "implausible"]):
        session.add(
            DeadLetter(
                id=uuid.uuid4(),
                channel="http",
                format="compact",
                device_serial="BP-ALICE",
                reason=reason,
                detail="test",
                payload={"n": n},
            )
        )
    session.add(
        DeadLetter(
            id=uuid.uuid4(),
            channel="http",
            format="compact",
            device_serial="SIM-UNKNOWN-1",
            reason="unknown_device",
            detail="test",
            payload={},
        )
    )
    session.commit()
    return Activity(world, devices)


@pytest.fixture
def activity(engine: Engine) -> Activity:
    overview_cache.clear()
    with Session(engine, expire_on_commit=False) as s:
        return seed_activity(s, standard_world(s))


@pytest.fixture
def web_client(engine: Engine, activity: Activity) -> Iterator[TestClient]:
    with make_client(engine) as c:
        yield c


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form like a browser; returns the page's CSRF token."""
    client.cookies.clear()
    form = client.get("/web/login")
    token = CSRF.search(form.text)
    assert token, form.text
    response = client.post(
        "/web/login",
        data={"username": username, "password": password, "csrf_token": token.group(1), "next": "/web/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/web/")  # every page of a logged-in user carries the CSRF token (logout form)
    found = CSRF.search(page.text)
    assert found
    return found.group(1)


def enrol_long_overdue(session: Session, activity: Activity) -> None:
    """Alice and Bob in hypertension, enrolled 120 days ago: their follow-up is long overdue."""
    for key in ("alice", "bob"):
        service.enrol(
            session,
            system_principal(),
            activity.world.patients[key].id,
            "hypertension",
            at=utcnow() - timedelta(days=120),
            diagnosed=True,
        )
