"""Worklists: overdue patients sorted by risk (critical first, then ASCVD risk, then days overdue),
more than 12 months overdue on a separate list, filters and pages, call outcomes acted on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.people.models import Patient
from medloop.programs import service
from tests.factories import World, add_patient, auth
from tests.programs.conftest import T0

SYSTEM = system_principal()
AS_OF = T0 + timedelta(days=500)
# name: (days overdue at AS_OF, ASCVD risk %, critical)
PATIENTS = {
    "p-low": (10, 5.0, False),
    "p-high-40": (40, 20.0, False),
    "p-critical": (5, 2.0, True),
    "p-lost": (400, 30.0, False),
    "p-not-due": (-20, 25.0, False),
    "p-unknown-risk": (40, None, False),
    "p-high-60": (60, 20.0, False),
}
OVERDUE_ORDER = ["p-critical", "p-high-60", "p-high-40", "p-low", "p-unknown-risk"]


@pytest.fixture
def overdue_world(engine: Engine, world: World) -> World:
    """Hypertension enrolments at CHC-A1 whose confirming visit falls due (one month after
    enrolment) the given number of days before AS_OF."""
    from medloop.programs.definitions import add_months

    with Session(engine, expire_on_commit=False) as s:
        for name, (overdue, risk, critical) in PATIENTS.items():
            patient = add_patient(s, world, name, "CHC-A1")
            due = AS_OF - timedelta(days=overdue)
            enrolled = add_months(due, -1)
            data = {"ascvd_risk": risk} if risk is not None else {}
            service.enrol(s, SYSTEM, patient.id, "hypertension", at=enrolled, data=data)
            if critical:
                alert = service.NewEvent(
                    f"alert-{name}",
                    patient.id,
                    "device_alert",
                    enrolled + timedelta(days=1),
                    {"rule_id": "bp-critical-systolic"},
                )
                service.record_events(s, SYSTEM, [alert])
        s.commit()
    return world


def _names(response: dict[str, object]) -> list[str]:
    items = response["items"]
    assert isinstance(items, list)
    return [i["patient_name"] for i in items]


def _key(name: str) -> str:
    return name[:1].upper() + name[1:]  # add_patient's family name + given name


def test_overdue_order_and_lost_list(client: TestClient, overdue_world: World) -> None:
    headers = auth(client, "doc-a1")
    params = {"facility_id": str(overdue_world.org_id("CHC-A1")), "as_of": AS_OF.isoformat()}
    body = client.get("/api/v1/worklists/overdue", headers=headers, params=params).json()
    assert _names(body) == [_key(n) for n in OVERDUE_ORDER]
    first = body["items"][0]
    assert first["critical"] is True and first["days_overdue"] == 5 and first["phone"] is None
    lost = client.get("/api/v1/worklists/lost-to-follow-up", headers=headers, params=params).json()
    assert _names(lost) == [_key("p-lost")] and lost["items"][0]["days_overdue"] == 400


def test_filters_and_pages(client: TestClient, overdue_world: World) -> None:
    headers = auth(client, "doc-cnty-a")
    base = {"as_of": AS_OF.isoformat()}
    page1 = client.get("/api/v1/worklists/overdue", headers=headers, params=base | {"limit": 2}).json()
    page2 = client.get(
        "/api/v1/worklists/overdue", headers=headers, params=base | {"limit": 2, "offset": 2}
    ).json()
    assert (page1["total"], page1["next_offset"]) == (5, 2)
    assert _names(page1) + _names(page2) == [_key(n) for n in OVERDUE_ORDER[:4]]
    risky = client.get("/api/v1/worklists/overdue", headers=headers, params=base | {"min_risk": 10}).json()
    assert _names(risky) == [_key("p-high-60"), _key("p-high-40")]
    critical = client.get(
        "/api/v1/worklists/overdue", headers=headers, params=base | {"critical_only": True}
    ).json()
    assert _names(critical) == [_key("p-critical")]
    other = client.get(
        "/api/v1/worklists/overdue", headers=headers, params=base | {"programme": "copd"}
    ).json()
    assert other["total"] == 0
    naive = client.get("/api/v1/worklists/overdue", headers=headers, params={"as_of": "2027-01-01T00:00:00"})
    assert naive.status_code == 400


def test_facility_scope(client: TestClient, overdue_world: World) -> None:
    params = {"facility_id": str(overdue_world.org_id("CHC-A1")), "as_of": AS_OF.isoformat()}
    assert (
        client.get("/api/v1/worklists/overdue", headers=auth(client, "doc-b1"), params=params).status_code
        == 404
    )
    mine = client.get(
        "/api/v1/worklists/overdue", headers=auth(client, "doc-b1"), params={"as_of": AS_OF.isoformat()}
    )
    assert mine.json()["total"] == 0
    assert client.get("/api/v1/worklists/overdue", headers=auth(client, "partner")).status_code == 403


def test_call_outcomes_are_acted_on(client: TestClient, engine: Engine, overdue_world: World) -> None:
    headers = auth(client, "doc-a1")
    params = {"as_of": AS_OF.isoformat()}
    items = {
        i["patient_name"]: i
        for i in client.get("/api/v1/worklists/overdue", headers=headers, params=params).json()["items"]
    }

    def call(name: str, **body: object) -> dict[str, object]:
        r = client.post(
            f"/api/v1/enrolments/{items[_key(name)]['enrolment_id']}/call-outcomes",
            headers=headers,
            json={"at": AS_OF.isoformat(), **body},
        )
        assert r.status_code == 200, r.text
        result: dict[str, object] = r.json()
        return result

    moved = call(
        "p-low", outcome="reached_rescheduled", rescheduled_to=(AS_OF + timedelta(days=7)).isoformat()
    )
    assert moved["next_due_at"] == (AS_OF + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    call("p-high-40", outcome="not_reached")
    call("p-high-60", outcome="moved_away")
    died = call("p-unknown-risk", outcome="died")
    assert died["status"] == "ended" and died["end_reason"] == "died"
    left = _names(client.get("/api/v1/worklists/overdue", headers=headers, params=params).json())
    assert left == [_key("p-critical"), _key("p-high-40")]
    with Session(engine) as s:
        patient = s.get(Patient, overdue_world.patients["p-unknown-risk"].id)
        assert patient is not None and patient.deceased
    bad = client.post(
        f"/api/v1/enrolments/{items[_key('p-critical')]['enrolment_id']}/call-outcomes",
        headers=headers,
        json={"outcome": "reached_rescheduled"},
    )
    assert bad.status_code == 400
