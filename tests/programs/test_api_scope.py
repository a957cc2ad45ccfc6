"""Facility scope on every programme endpoint: carol lives at CHC-B1. Her care team (doc-b1) gets
through; a clinician at CHC-A1 gets 404 (no existence leak) or lists without her; a programme
manager over CNTY-B reads but cannot write; a partner has no programme role (403); no token, 401.
The table covers every route of the router (checked)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.auth.principal import system_principal
from medloop.programs import kpi, service
from medloop.programs.api import router
from medloop.programs.models import Enrolment, MdtCase, ProgrammeEvent, ProgrammeTask, Referral
from tests.factories import World, auth
from tests.programs.conftest import T0, at

SYSTEM = system_principal()


@dataclass
class Ids:
    patient: uuid.UUID
    facility: uuid.UUID
    enrolment: uuid.UUID
    task: uuid.UUID
    referral: uuid.UUID
    case: uuid.UUID
    hub: uuid.UUID


@pytest.fixture
def carol(engine: Engine, world: World) -> Ids:
    with Session(engine, expire_on_commit=False) as s:
        pid = world.patients["carol"].id
        enrolment = service.enrol(s, SYSTEM, pid, "lung_cancer", at=T0)
        ldct = {
            "test": "ldct",
            "nodule_type": "solid",
            "nodule_status": "baseline",
            "nodule_long_mm": 17,
            "nodule_short_mm": 15,
            "suspicious_features": False,
        }
        service.record_events(s, SYSTEM, [service.NewEvent("ldct", pid, "test_result", at(10), ldct)])
        service.enrol(s, SYSTEM, pid, "copd", at=T0)  # an open spirometry referral
        kpi.refresh(s, T0.date().replace(day=1))
        task = s.scalars(
            select(ProgrammeTask.id).where(
                ProgrammeTask.key == "education", ProgrammeTask.enrolment_id == enrolment.id
            )
        ).one()
        referral = s.scalars(select(Referral.id).where(Referral.status == "requested")).one()
        case = s.scalars(select(MdtCase.id)).one()
        s.commit()
    return Ids(pid, world.org_id("CHC-B1"), enrolment.id, task, referral, case, world.org_id("HUB"))


Body = Callable[[Ids], dict[str, Any] | None]


@dataclass
class Call:
    method: str
    path: str  # with {enrolment}, {task}, {referral}, {case}
    kind: str  # one: 404 outside the scope; list: filtered outside the scope; public: no patient data
    body: Body = lambda _ids: None
    params: Callable[[Ids], dict[str, str]] = lambda _ids: {}
    write: bool = False

    def url(self, ids: Ids) -> str:
        return self.path.format(
            enrolment=ids.enrolment,
            task=ids.task,
            referral=ids.referral,
            case=ids.case,
            programme="lung_cancer",
        )


CALLS = [
    Call("GET", "/api/v1/programmes", "public"),
    Call("GET", "/api/v1/programmes/{programme}", "public"),
    Call("GET", "/api/v1/enrolments", "list", params=lambda i: {"patient_id": str(i.patient)}),
    Call("GET", "/api/v1/enrolments/{enrolment}", "one"),
    Call("GET", "/api/v1/enrolments/{enrolment}/events", "one"),
    Call("GET", "/api/v1/tasks", "list"),
    Call(
        "GET",
        "/api/v1/worklists/overdue",
        "one",
        params=lambda i: {"facility_id": str(i.facility), "as_of": at(30).isoformat()},
    ),
    Call(
        "GET", "/api/v1/worklists/lost-to-follow-up", "one", params=lambda i: {"facility_id": str(i.facility)}
    ),
    Call("GET", "/api/v1/referrals", "list"),
    Call("GET", "/api/v1/referrals/{referral}", "one"),
    Call("GET", "/api/v1/referrals/{referral}/service-request", "one"),
    Call("GET", "/api/v1/mdt-cases", "list"),
    Call("GET", "/api/v1/mdt-cases/{case}", "one"),
    Call("GET", "/api/v1/kpis", "list", params=lambda _i: {"level": "facility", "unit": "CHC-B1"}),
    Call(
        "POST",
        "/api/v1/enrolments",
        "one",
        write=True,
        body=lambda i: {
            "patient_id": str(i.patient),
            "programme": "hypertension",
            "enrolled_at": at(1).isoformat(),
        },
    ),
    Call(
        "POST",
        "/api/v1/visits",
        "one",
        write=True,
        body=lambda i: {
            "id": "visit-1",
            "patient_id": str(i.patient),
            "facility_id": str(i.facility),
            "effective_at": at(12).isoformat(),
            "sbp": 128,
            "dbp": 82,
        },
    ),
    Call(
        "POST",
        "/api/v1/events",
        "one",
        write=True,
        body=lambda i: {
            "events": [
                {
                    "id": "ev-1",
                    "patient_id": str(i.patient),
                    "kind": "test_result",
                    "effective_at": at(13).isoformat(),
                    "payload": {"test": "pet_ct"},
                }
            ]
        },
    ),
    Call(
        "POST", "/api/v1/tasks/{task}/complete", "one", write=True, body=lambda _i: {"at": at(14).isoformat()}
    ),
    Call(
        "POST",
        "/api/v1/referrals/{referral}/status",
        "one",
        write=True,
        body=lambda _i: {"status": "accepted", "at": at(15).isoformat()},
    ),
    Call(
        "POST",
        "/api/v1/mdt-cases/{case}/schedule",
        "one",
        write=True,
        body=lambda i: {
            "scheduled_at": at(16).isoformat(),
            "participants": [
                {"facility_id": str(i.hub), "role": "radiologist"},
                {"facility_id": str(i.facility), "role": "general_practitioner"},
            ],
        },
    ),
    Call(
        "POST",
        "/api/v1/mdt-cases/{case}/recommendation",
        "one",
        write=True,
        body=lambda _i: {
            "recommendation": "surveillance",
            "follow_up_at": at(100).isoformat(),
            "at": at(17).isoformat(),
        },
    ),
    Call(
        "POST",
        "/api/v1/enrolments/{enrolment}/call-outcomes",
        "one",
        write=True,
        body=lambda _i: {"outcome": "not_reached", "at": at(18).isoformat()},
    ),
]


def test_the_table_covers_every_route() -> None:
    routes = {(m, r.path) for r in router.routes for m in r.methods}  # type: ignore[attr-defined]
    table = {
        (
            c.method,
            c.path.replace("{enrolment}", "{enrolment_id}")
            .replace("{task}", "{task_id}")
            .replace("{referral}", "{referral_id}")
            .replace("{case}", "{case_id}"),
        )
        for c in CALLS
    }
    assert routes == table


def _call(client: TestClient, user: str | None, call: Call, ids: Ids) -> Any:
    headers = auth(client, user) if user else {}
    return client.request(
        call.method, call.url(ids), headers=headers, params=call.params(ids), json=call.body(ids)
    )


def _mentions(response: Any, ids: Ids) -> bool:
    return str(ids.patient) in response.text or "CHC-B1" in response.text


def test_outside_the_scope(client: TestClient, carol: Ids) -> None:
    for call in CALLS:
        r = _call(client, "doc-a1", call, carol)
        if call.kind == "one":
            assert r.status_code == 404, (call.method, call.path, r.status_code, r.text)
        else:
            assert r.status_code == 200, (call.method, call.path)
            if call.kind == "list":
                assert not _mentions(r, carol), (call.method, call.path)


def test_no_role_and_no_token(client: TestClient, carol: Ids) -> None:
    for call in CALLS:
        r = _call(client, None, call, carol)
        assert r.status_code == 401, (call.method, call.path)
        r = _call(client, "partner", call, carol)
        assert r.status_code == (200 if call.kind == "public" else 403), (call.method, call.path)


def test_programme_manager_reads_but_does_not_write(client: TestClient, carol: Ids) -> None:
    for call in CALLS:
        r = _call(client, "pm-b", call, carol)
        assert r.status_code == (403 if call.write else 200), (call.method, call.path, r.text)


def test_care_team(client: TestClient, engine: Engine, carol: Ids) -> None:
    for call in CALLS:
        r = _call(client, "doc-b1", call, carol)
        assert 200 <= r.status_code < 300, (call.method, call.path, r.status_code, r.text)
        if call.kind == "list":
            assert _mentions(r, carol), (call.method, call.path)
    with Session(engine) as s:
        reads = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.patient_id == carol.patient, AuditEvent.actor == "doc-b1")
        )
        assert reads and reads >= 15
        assert (
            s.scalar(select(func.count()).select_from(Enrolment).where(Enrolment.patient_id == carol.patient))
            == 3
        )


def test_a_bad_event_does_not_hold_up_the_good_ones(
    client: TestClient, engine: Engine, world: World, carol: Ids
) -> None:
    headers = auth(client, "doc-b1")

    def event(event_id: str, kind: str = "test_result", **payload: Any) -> dict[str, Any]:
        patient = payload.pop("patient", carol.patient)
        return {
            "id": event_id,
            "patient_id": str(patient),
            "kind": kind,
            "effective_at": at(20).isoformat(),
            "payload": payload or {"test": "pet_ct"},
        }

    naive_time = event("naive-time") | {"effective_at": "2026-01-01T10:00:00"}
    batch: list[Any] = [
        event("bad-kind", "telepathy"),
        event("ok-1"),
        event("bad-sbp", "visit", sbp=400, dbp=80),
        {k: v for k, v in event("no-patient").items() if k != "patient_id"},  # malformed: 422 alone
        event("other-patient", patient=world.patients["alice"].id),
        event("ldct"),  # stored by the fixture
        naive_time,
        event("bad id!"),
        "not an event",
        event("ok-2", "visit", sbp=150, dbp=95),
    ]
    r = client.post("/api/v1/events", headers=headers, json={"events": batch})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["stored"], body["duplicates"]) == (["ok-1", "ok-2"], ["ldct"])
    assert [(x["index"], x["id"], x["status"], x.get("field")) for x in body["refused"]] == [
        (0, "bad-kind", 400, None),
        (2, "bad-sbp", 400, "sbp"),
        (3, "no-patient", 422, "patient_id"),
        (4, "other-patient", 404, None),
        (6, "naive-time", 422, "effective_at"),
        (7, None, 422, "id"),
        (8, None, 422, None),
    ]
    details = [x["detail"] for x in body["refused"]]
    assert "unknown kind 'telepathy'" in details[0]
    assert details[2].startswith("event 3: patient_id: Field required")
    assert "timezone" in details[4]
    with Session(engine) as s:
        ids = [e["id"] for e in batch if isinstance(e, dict)]
        stored = set(s.scalars(select(ProgrammeEvent.id).where(ProgrammeEvent.id.in_(ids))))
    assert stored == {"ok-1", "ok-2", "ldct"}

    # nothing recordable: the first refusal is the answer, listing them all
    r = client.post("/api/v1/events", headers=headers, json={"events": batch[:1] + batch[2:5]})
    assert r.status_code == 400 and "unknown kind 'telepathy'" in r.json()["detail"]
    assert [x["id"] for x in r.json()["errors"]] == ["bad-kind", "bad-sbp", "no-patient", "other-patient"]
    r = client.post("/api/v1/events", headers=headers, json={"events": [naive_time]})
    assert r.status_code == 422 and r.json()["detail"].startswith("event 0: effective_at:")


def test_bad_input_is_a_clear_4xx(client: TestClient, carol: Ids) -> None:
    headers = auth(client, "doc-b1")
    event = {
        "id": "bad-1",
        "patient_id": str(carol.patient),
        "kind": "telepathy",
        "effective_at": at(1).isoformat(),
    }
    r = client.post("/api/v1/events", headers=headers, json={"events": [event]})
    assert r.status_code == 400 and "unknown kind 'telepathy'" in r.json()["detail"]
    r = client.post(
        "/api/v1/events",
        headers=headers,
        json={"events": [event | {"kind": "visit", "effective_at": "2026-01-01T10:00:00"}]},
    )
    assert r.status_code == 422 and "effective_at" in r.json()["detail"]
    for body in ({"events": []}, {"events": "not a list"}, {"events": [event], "extra": 1}):
        r = client.post("/api/v1/events", headers=headers, json=body)
        assert r.status_code == 422, body
    r = client.post(
        "/api/v1/events",
        headers=headers,
        json={"events": [event | {"kind": "visit", "payload": {"sbp": "high"}}]},
    )
    assert r.status_code == 400 and "sbp must be a number" in r.json()["detail"]
    # a visit sent as an event gets the checks POST /api/v1/visits makes
    r = client.post(
        "/api/v1/events",
        headers=headers,
        json={"events": [event | {"kind": "visit", "payload": {"sbp": 400, "dbp": 80}}]},
    )
    assert r.status_code == 400 and r.json()["field"] == "sbp"
    assert "event bad-1: sbp 400 is outside the plausible range" in r.json()["detail"]
    r = client.post(
        "/api/v1/events",
        headers=headers,
        json={"events": [event | {"id": "clinic:7", "kind": "visit", "payload": {"sbp": 130}}]},
    )
    assert r.status_code == 400 and "event clinic:7: a visit's id must be a FHIR id" in r.json()["detail"]
    visit = {
        "patient_id": str(carol.patient),
        "facility_id": str(carol.facility),
        "effective_at": at(2).isoformat(),
        "sbp": 400,
        "dbp": 80,
    }
    r = client.post("/api/v1/visits", headers=headers, json=visit)
    assert r.status_code == 400 and r.json()["field"] == "sbp"
    r = client.post("/api/v1/visits", headers=headers, json=visit | {"sbp": 130, "id": "clinic_7"})
    assert r.status_code == 422 and "id" in r.text
    r = client.post(
        "/api/v1/enrolments", headers=headers, json={"patient_id": str(carol.patient), "programme": "yoga"}
    )
    assert r.status_code == 404 and "unknown programme" in r.json()["detail"]
    r = client.post(
        "/api/v1/enrolments",
        headers=headers,
        json={"patient_id": str(carol.patient), "programme": "lung_cancer"},
    )
    assert r.status_code == 409 and r.json()["enrolment_id"] == str(carol.enrolment)
    assert client.get("/api/v1/programmes/yoga", headers=headers).status_code == 404
