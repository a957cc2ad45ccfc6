"""Referral routing on the small test network (known great-circle distances), up to the hub and back
down to the community centre, tracked to completion with times, and shaped as a FHIR ServiceRequest."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.errors import Conflict
from medloop.network.routing import Facility, Network
from medloop.programs import referrals, service
from medloop.programs.models import Referral
from medloop.programs.referrals import route
from tests.factories import NETWORK, World, auth
from tests.programs.conftest import T0, at

SYSTEM = system_principal()
FACILITIES = {
    code: Facility(uuid.uuid5(uuid.NAMESPACE_DNS, code), code, code, tier, lat, lon, frozenset(caps))
    for code, tier, _parent, _district, lat, lon, caps in NETWORK
}
NET = Network(FACILITIES.values())


@pytest.mark.parametrize(
    ("origin", "capability", "direction", "home", "expected", "km"),
    [
        ("CHC-A1", "spirometry", "up", "CHC-A1", "CNTY-A", 7.35),  # the county hospital, not the hub
        ("CHC-A1", "ldct", "up", "CHC-A1", "HUB", 38.04),  # HUB (38 km) beats CNTY-B (102 km)
        ("CHC-B1", "ldct", "up", "CHC-B1", "CNTY-B", 7.37),
        ("CHC-A2", "cath_lab", "up", "CHC-A2", "HUB", 39.28),
        ("CNTY-B", "oncology_mdt", "up", "CHC-B1", "HUB", 138.01),
        ("HUB", "cath_lab", "up", "CHC-A1", "HUB", 0.0),  # already there
        ("HUB", "primary_care", "down", "CHC-A1", "CHC-A1", 38.04),  # back to the home community centre
        ("HUB", "primary_care", "down", "CNTY-A", "CHC-A1", 7.35),  # home has no primary care: nearest to it
    ],
)
def test_route(origin: str, capability: str, direction: str, home: str, expected: str, km: float) -> None:
    found = route(NET, capability, direction, FACILITIES[origin], FACILITIES[home])
    assert found is not None
    assert found.facility.code == expected
    assert found.distance_km == pytest.approx(km, abs=0.01)


def test_no_facility_with_the_capability() -> None:
    assert route(NET, "pulmonary_rehab", "up", FACILITIES["CHC-A1"], FACILITIES["CHC-A1"]) is None


def _stemi(session: Session, world: World) -> uuid.UUID:
    alice = world.patients["alice"].id
    enrolment = service.enrol(session, SYSTEM, alice, "chest_pain", at=T0, data={"arrival_mode": "walk_in"})
    events = [
        service.NewEvent("ecg", alice, "first_ecg", at(minutes=8)),
        service.NewEvent("dx", alice, "stemi_diagnosis", at(minutes=15), {"stemi": True}),
    ]
    service.record_events(session, SYSTEM, events)
    return enrolment.id


def test_up_to_the_cath_lab_and_back_down(session: Session, world: World) -> None:
    enrolment_id = _stemi(session, world)
    up = session.scalars(select(Referral).where(Referral.enrolment_id == enrolment_id)).one()
    assert (up.capability, up.direction, up.priority, up.status) == ("cath_lab", "up", "urgent", "requested")
    assert (up.requester_id, up.performer_id) == (world.org_id("CHC-A1"), world.org_id("HUB"))
    assert up.distance_km == pytest.approx(38.04, abs=0.01) and up.authored_at == at(minutes=15)
    referrals.set_status(session, SYSTEM, up.id, "accepted", at=at(minutes=18))
    referrals.set_status(session, SYSTEM, up.id, "arrived", at=at(minutes=55))
    with pytest.raises(Conflict):
        referrals.set_status(session, SYSTEM, up.id, "accepted", at=at(minutes=56))
    alice = world.patients["alice"].id
    service.record_events(
        session,
        SYSTEM,
        [
            service.NewEvent("pci", alice, "reperfusion", at(minutes=120), {"method": "pci"}),
            service.NewEvent("out", alice, "discharge", at(4)),
        ],
    )
    session.refresh(up)
    assert (up.status, up.accepted_at, up.arrived_at, up.completed_at) == (
        "completed",
        at(minutes=18),
        at(minutes=55),
        at(minutes=120),  # the balloon closed the transfer
    )
    down = session.scalars(
        select(Referral).where(Referral.enrolment_id == enrolment_id, Referral.direction == "down")
    ).one()
    # Back down from where the patient went up to (HUB), to the home community centre.
    assert (down.requester_id, down.performer_id, down.capability) == (
        world.org_id("HUB"),
        world.org_id("CHC-A1"),
        "primary_care",
    )
    referrals.set_status(session, SYSTEM, down.id, "accepted", at=at(5))
    referrals.set_status(session, SYSTEM, down.id, "completed", at=at(9))
    session.refresh(down)
    assert down.completed_at == at(9)
    tasks = {t.key: t.status for t in service.enrolment_tasks(session, enrolment_id)}
    assert tasks["community_follow_up"] == "done"  # the outcome event closed the task


def test_unroutable_referral_is_kept_as_draft(session: Session, world: World) -> None:
    carol = world.patients["carol"].id
    service.enrol(session, SYSTEM, carol, "copd", at=T0, diagnosed=True)
    events = [
        service.NewEvent("x", carol, "exacerbation", at(30)),
        service.NewEvent("v", carol, "visit", at(40)),
    ]
    service.record_events(session, SYSTEM, events)
    rehab = session.scalars(select(Referral).where(Referral.capability == "pulmonary_rehab")).one()
    assert rehab.status == "unrouted" and rehab.performer_id is None
    assert referrals.service_request(rehab)["status"] == "draft"


def test_service_request_shape(client: TestClient, engine: Engine, world: World) -> None:
    with Session(engine) as s:
        enrolment_id = _stemi(s, world)
        s.commit()
        referral_id = s.scalars(select(Referral.id).where(Referral.enrolment_id == enrolment_id)).one()
    r = client.get(f"/api/v1/referrals/{referral_id}/service-request", headers=auth(client, "doc-a1"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["resourceType"] == "ServiceRequest" and doc["status"] == "active" and doc["intent"] == "order"
    assert doc["priority"] == "urgent"
    assert doc["subject"] == {"reference": f"Patient/{world.patients['alice'].id}"}
    assert doc["performer"] == [{"reference": f"Organization/{world.org_id('HUB')}"}]
    assert doc["code"]["coding"][0]["code"] == "cath_lab"
    direction = {e["url"].rsplit("/", 1)[1]: e for e in doc["extension"]}
    assert direction["referral-direction"]["valueCode"] == "up"
    assert direction["referral-distance-km"]["valueDecimal"] == pytest.approx(38.04, abs=0.01)
    ServiceRequest.model_validate(doc)  # valid FHIR R4


def test_status_via_api_with_times(client: TestClient, engine: Engine, world: World) -> None:
    with Session(engine) as s:
        enrolment_id = _stemi(s, world)
        s.commit()
        referral_id = s.scalars(select(Referral.id).where(Referral.enrolment_id == enrolment_id)).one()
    headers = auth(client, "doc-a1")
    url = f"/api/v1/referrals/{referral_id}/status"
    assert (
        client.post(
            url, headers=headers, json={"status": "accepted", "at": at(minutes=20).isoformat()}
        ).status_code
        == 200
    )
    done = client.post(url, headers=headers, json={"status": "completed", "at": at(minutes=90).isoformat()})
    assert done.status_code == 200 and done.json()["completed_at"].startswith("2026-01-05T10:30")
    again = client.post(url, headers=headers, json={"status": "declined"})
    assert again.status_code == 409 and "closed" in again.json()["detail"]
    early = client.post(url, headers=headers, json={"status": "nonsense"})
    assert early.status_code == 422
