"""MDT review: a Lung-RADS 4B result opens a case hosted by the nearest oncology MDT, participants
from several facilities are scheduled, and the recorded recommendation moves the pathway."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.programs import service
from medloop.programs.models import Enrolment, MdtCase, Referral
from tests.factories import World, auth
from tests.programs.conftest import T0, at

SYSTEM = system_principal()
LDCT_4B = {
    "test": "ldct",
    "nodule_type": "solid",
    "nodule_status": "baseline",
    "nodule_long_mm": 17,
    "nodule_short_mm": 15,
    "suspicious_features": False,
}


def _case(engine: Engine, world: World, patient: str = "bob") -> tuple[uuid.UUID, uuid.UUID]:
    with Session(engine, expire_on_commit=False) as s:
        pid = world.patients[patient].id
        enrolment = service.enrol(s, SYSTEM, pid, "lung_cancer", at=T0)
        service.record_events(
            s, SYSTEM, [service.NewEvent(f"ldct-{patient}", pid, "test_result", at(14), LDCT_4B)]
        )
        case_id = s.scalars(select(MdtCase.id).where(MdtCase.enrolment_id == enrolment.id)).one()
        s.commit()
    return enrolment.id, case_id


def test_case_opens_with_its_data_at_the_nearest_mdt(engine: Engine, world: World) -> None:
    _, case_id = _case(engine, world)
    with Session(engine) as s:
        case = s.get(MdtCase, case_id)
        assert case is not None
        assert case.host_id == world.org_id("HUB") and case.status == "open"
        assert case.case_data["lung_rads_category"] == "4B"
        assert case.case_data["nodule_mean_mm"] == 16.0
        assert case.created_at == at(14)


def test_schedule_review_and_recommendation_drive_the_pathway(
    client: TestClient, engine: Engine, world: World
) -> None:
    enrolment_id, case_id = _case(engine, world)
    headers = auth(client, "doc-cnty-a")  # bob is at CHC-A2, below CNTY-A
    people = [
        {"facility_id": str(world.org_id("HUB")), "role": "thoracic_surgeon"},
        {"facility_id": str(world.org_id("HUB")), "role": "radiologist"},
        {"facility_id": str(world.org_id("CNTY-B")), "role": "oncologist"},
        {"facility_id": str(world.org_id("CHC-A2")), "role": "general_practitioner"},
    ]
    r = client.post(
        f"/api/v1/mdt-cases/{case_id}/schedule",
        headers=headers,
        json={"scheduled_at": at(18).isoformat(), "participants": people},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "scheduled" and len({p["facility_id"] for p in body["participants"]}) == 3
    bad = client.post(
        f"/api/v1/mdt-cases/{case_id}/recommendation", headers=headers, json={"recommendation": "hope"}
    )
    assert bad.status_code == 400 and "surveillance" in bad.json()["detail"]
    r = client.post(
        f"/api/v1/mdt-cases/{case_id}/recommendation",
        headers=headers,
        json={"recommendation": "biopsy", "note": "CT-guided", "at": at(18).isoformat()},
    )
    assert r.status_code == 200 and r.json()["status"] == "reviewed"
    again = client.post(
        f"/api/v1/mdt-cases/{case_id}/recommendation", headers=headers, json={"recommendation": "surgery"}
    )
    assert again.status_code == 409
    enrolment = client.get(f"/api/v1/enrolments/{enrolment_id}", headers=headers).json()
    assert enrolment["state"] == "workup"
    assert {t["key"] for t in enrolment["tasks"] if t["status"] == "open"} >= {"tissue_sampling"}
    # Pathology comes back: a second review, then surgery at the oncology centre.
    bob = str(world.patients["bob"].id)
    event = {
        "id": "path-1",
        "patient_id": bob,
        "kind": "test_result",
        "effective_at": at(25).isoformat(),
        "payload": {"test": "pathology", "result": "adenocarcinoma"},
    }
    assert client.post("/api/v1/events", headers=headers, json={"events": [event]}).status_code == 202
    cases = client.get("/api/v1/mdt-cases", headers=headers, params={"status": "open"}).json()["items"]
    assert len(cases) == 1 and cases[0]["case_data"]["pathology"] == "adenocarcinoma"
    r = client.post(
        f"/api/v1/mdt-cases/{cases[0]['id']}/recommendation",
        headers=headers,
        json={"recommendation": "surgery", "at": at(30).isoformat()},
    )
    assert r.status_code == 200
    with Session(engine) as s:
        row = s.get(Enrolment, enrolment_id)
        assert row is not None and (row.state, row.stage) == ("treatment", "treatment")
        treatment = s.scalars(select(Referral).where(Referral.task_key == "treatment_referral")).one()
        assert treatment.performer_id == world.org_id("HUB")


def test_cases_are_scoped(client: TestClient, engine: Engine, world: World) -> None:
    _, case_id = _case(engine, world, "carol")  # CHC-B1
    assert client.get(f"/api/v1/mdt-cases/{case_id}", headers=auth(client, "doc-a1")).status_code == 404
    assert client.get(f"/api/v1/mdt-cases/{case_id}", headers=auth(client, "doc-b1")).status_code == 200
    assert client.get("/api/v1/mdt-cases", headers=auth(client, "doc-a1")).json()["total"] == 0
    r = client.post(
        f"/api/v1/mdt-cases/{case_id}/recommendation",
        headers=auth(client, "doc-a1"),
        json={"recommendation": "surgery"},
    )
    assert r.status_code == 404
