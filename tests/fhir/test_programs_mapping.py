"""The programme tables through FHIR: CarePlan ↔ enrolment, Task ↔ programme task, ServiceRequest ↔
referral, Encounter ↔ visit event. Round trips (every resource served is valid R4), search
parameters, writes that reach the pathway engine and show in the programmes REST API (and the
other way round), facility scope (404, empty searches, `_include`), roles and SMART scopes, bad
writes answered with an OperationOutcome, the CapabilityStatement and Patient-level export.
SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.fhir import bulk
from medloop.fhir.common import instant
from medloop.fhir.mapping.programs import (
    BUSINESS_STATUS_EXTENSION,
    EVENT_SYSTEM,
    PLAN_DEFINITION,
    PROGRAMME_SYSTEM,
    STAGE_EXTENSION,
    STATE_EXTENSION,
    TASK_KIND_SYSTEM,
    TASK_OUTPUT_SYSTEM,
    VISIT_MEASURE_SYSTEM,
)
from medloop.fhir.validation import validate
from medloop.programs.models import Enrolment
from medloop.store.base import utcnow
from tests.factories import World, auth
from tests.fhir.conftest import LOINC, UCUM

FHIR = {"content-type": "application/fhir+json"}


@pytest.fixture(autouse=True)
def bulk_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(bulk.BULK_DIR_ENV, str(tmp_path / "bulk"))
    return tmp_path / "bulk"


def days(n: float) -> str:
    """A FHIR instant n days from now."""
    found = instant(utcnow() + timedelta(days=n))
    assert found is not None
    return found


def headers(client: TestClient, username: str) -> dict[str, str]:
    return {**auth(client, username), **FHIR}


def outcome(response: Any, status: int) -> str:
    """The diagnostics of an error OperationOutcome with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    return str(body["issue"][0]["diagnostics"])


def post(client: TestClient, who: dict[str, str], resource: dict[str, Any], **extra: str) -> Any:
    return client.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers={**who, **extra}
    )


def put(client: TestClient, who: dict[str, str], resource: dict[str, Any], etag: str | None = None) -> Any:
    extra = {"If-Match": etag} if etag else {}
    return client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}",
        content=orjson.dumps(resource),
        headers={**who, **extra},
    )


def search(client: TestClient, who: dict[str, str], rtype: str, **params: str) -> dict[str, Any]:
    response = client.get(f"/fhir/{rtype}", params=params, headers=who)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    validate(resource)  # every resource medloop serves is valid FHIR
    return resource


def careplan(patient: object, programme: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": PROGRAMME_SYSTEM, "code": programme}]}],
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def loinc(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code}]}


def encounter(patient: object, facility: object, sbp: float, dbp: float, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
        "serviceProvider": {"reference": f"Organization/{facility}"},
        "period": {"start": days(-1)},
        "contained": [
            {
                "resourceType": "Observation",
                "id": "bp",
                "status": "final",
                "code": loinc("85354-9"),
                "encounter": {"reference": "#"},
                "component": [
                    {"code": loinc("8480-6"), "valueQuantity": quantity(sbp, "mm[Hg]")},
                    {"code": loinc("8462-4"), "valueQuantity": quantity(dbp, "mm[Hg]")},
                ],
            }
        ],
        **extra,
    }


def enrol_rest(client: TestClient, username: str, patient: object, programme: str) -> dict[str, Any]:
    body = {"patient_id": str(patient), "programme": programme}
    response = client.post("/api/v1/enrolments", json=body, headers=auth(client, username))
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def extensions(resource: dict[str, Any]) -> dict[str, Any]:
    return {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in resource["extension"]}


def test_careplan_is_an_enrolment_both_ways(client: TestClient, world: World) -> None:
    doc = headers(client, "doc-a1")  # scope: CHC-A1 (alice)
    alice, facility = world.patients["alice"].id, world.org_id("CHC-A1")
    body = careplan(alice, "hypertension", author={"reference": f"Organization/{facility}"})
    body["period"] = {"start": days(-30)}
    created = post(client, doc, body)
    assert created.status_code == 201, created.text
    plan = valid(created.json())
    assert plan["instantiatesCanonical"] == [f"{PLAN_DEFINITION}/hypertension|1"]
    assert plan["subject"] == {"reference": f"Patient/{alice}"}
    assert plan["author"] == {"reference": f"Organization/{facility}"}
    assert (
        extensions(plan)[STATE_EXTENSION] == "screened" and extensions(plan)[STAGE_EXTENSION] == "screening"
    )
    assert created.headers["etag"] == f'W/"{plan["meta"]["versionId"]}"'
    assert client.get(f"/fhir/CarePlan/{plan['id']}", headers=doc).json() == plan

    # the programmes REST API sees the enrolment, the engine ran (tasks), and the other way round
    rest = client.get(f"/api/v1/enrolments/{plan['id']}", headers=doc).json()
    assert (rest["programme"], rest["state"], rest["facility_id"]) == (
        "hypertension",
        "screened",
        str(facility),
    )
    assert {t["kind"] for t in rest["tasks"]} == {"education", "follow_up_visit"}
    diabetes = enrol_rest(client, "doc-a1", alice, "diabetes")
    served = valid(client.get(f"/fhir/CarePlan/{diabetes['id']}", headers=doc).json())
    assert served["category"][0]["coding"][0]["code"] == "diabetes"

    assert search(client, doc, "CarePlan", patient=str(alice))["total"] == 2
    assert ids(search(client, doc, "CarePlan", category="diabetes")) == [diabetes["id"]]
    assert ids(search(client, doc, "CarePlan", category=f"{PROGRAMME_SYSTEM}|hypertension")) == [plan["id"]]
    assert search(client, doc, "CarePlan", status="active")["total"] == 2
    assert search(client, doc, "CarePlan", status="completed,revoked")["total"] == 0
    assert ids(search(client, doc, "CarePlan", date=f"lt{days(-1)[:10]}")) == [plan["id"]]
    assert ids(search(client, doc, "CarePlan", _sort="-date")) == [diabetes["id"], plan["id"]]

    again = post(client, doc, body)
    assert "already has an active hypertension enrolment" in outcome(again, 409)
    same = post(client, doc, body, **{"If-None-Exist": f"category=hypertension&patient={alice}"})
    assert same.status_code == 200 and same.json()["id"] == plan["id"]


def test_tasks_search_complete_and_calls(client: TestClient, world: World) -> None:
    doc = headers(client, "doc-a1")
    alice, facility = world.patients["alice"].id, world.org_id("CHC-A1")
    enrolment = enrol_rest(client, "doc-a1", alice, "hypertension")
    found = search(client, doc, "Task", patient=str(alice), _sort="date")
    assert found["total"] == 2
    tasks = {t["code"]["coding"][0]["code"]: valid(t) for t in (e["resource"] for e in found["entry"])}
    education, follow_up = tasks["education"], tasks["follow_up_visit"]
    assert education["basedOn"] == [{"reference": f"CarePlan/{enrolment['id']}"}]
    assert (education["status"], education["intent"], education["owner"]) == (
        "ready",
        "plan",
        {"reference": f"Organization/{facility}"},
    )
    assert ids(search(client, doc, "Task", code="education")) == [education["id"]]
    assert ids(search(client, doc, "Task", code=f"{TASK_KIND_SYSTEM}|follow_up_visit")) == [follow_up["id"]]
    assert search(client, doc, "Task", owner=f"Organization/{facility}")["total"] == 2
    assert search(client, doc, "Task", owner=str(world.org_id("HUB")))["total"] == 0
    assert search(client, doc, "Task", **{"based-on": f"CarePlan/{enrolment['id']}"})["total"] == 2
    assert ids(search(client, doc, "Task", date=f"gt{days(7)[:10]}")) == [follow_up["id"]]  # due in a month
    assert search(client, doc, "Task", status="completed")["total"] == 0

    stale = put(client, doc, {**education, "status": "completed"}, 'W/"1"')
    outcome(stale, 412)
    done = put(client, doc, {**education, "status": "completed"}, f'W/"{education["meta"]["versionId"]}"')
    assert done.status_code == 200, done.text
    assert valid(done.json())["status"] == "completed" and "end" in done.json()["executionPeriod"]
    rest = client.get("/api/v1/tasks", params={"status": "done"}, headers=auth(client, "doc-a1")).json()
    assert [t["id"] for t in rest["items"]] == [education["id"]]
    assert "only a ready task can change" in outcome(
        put(client, doc, {**education, "status": "cancelled"}), 409
    )
    assert "can become completed or cancelled" in outcome(
        put(client, doc, {**follow_up, "status": "in-progress"}), 422
    )

    # a call from the worklist about the follow-up: rescheduled, the engine moves the due date
    later = days(60)
    call = {
        **follow_up,
        "output": [
            {
                "type": {"coding": [{"system": TASK_OUTPUT_SYSTEM, "code": "call-outcome"}]},
                "valueCode": "reached_rescheduled",
            },
            {
                "type": {"coding": [{"system": TASK_OUTPUT_SYSTEM, "code": "rescheduled-to"}]},
                "valueDateTime": later,
            },
        ],
    }
    etag = f'W/"{follow_up["meta"]["versionId"]}"'
    moved = put(client, doc, call, etag)
    assert moved.status_code == 200, moved.text
    assert (
        moved.json()["status"] == "ready" and moved.json()["restriction"]["period"]["end"][:10] == later[:10]
    )
    outcome(put(client, doc, call, etag), 412)  # a retry of the same change records no second call
    facts = client.get(f"/api/v1/enrolments/{enrolment['id']}", headers=auth(client, "doc-a1")).json()[
        "facts"
    ]
    assert (facts["last_call_outcome"], facts["calls"]) == ("reached_rescheduled", 1)
    call["output"][0]["valueCode"] = "no_idea"
    assert "outcome" in outcome(put(client, doc, {**call, "meta": moved.json()["meta"]}), 422)

    # moved away: the enrolment ends (revoked), its open tasks are cancelled
    call["output"] = [{**call["output"][0], "valueCode": "moved_away"}]
    assert put(client, doc, {**call, "meta": moved.json()["meta"]}).json()["status"] == "cancelled"
    plan = valid(client.get(f"/fhir/CarePlan/{enrolment['id']}", headers=doc).json())
    assert plan["status"] == "revoked" and "end" in plan["period"]
    assert ids(search(client, doc, "CarePlan", status="revoked")) == [enrolment["id"]]
    assert search(client, doc, "CarePlan", status="active,completed")["total"] == 0


def test_referrals_are_service_requests(client: TestClient, world: World) -> None:
    doc = headers(client, "doc-b1")  # scope: CHC-B1 (carol)
    carol, home = world.patients["carol"].id, world.org_id("CHC-B1")
    plan = post(client, doc, careplan(carol, "copd", period={"start": days(-20)})).json()  # opens a referral
    rest = client.get("/api/v1/referrals", params={"patient_id": str(carol)}, headers=auth(client, "doc-b1"))
    (referral,) = rest.json()["items"]
    request = valid(client.get(f"/fhir/ServiceRequest/{referral['id']}", headers=doc).json())
    assert (request["status"], request["intent"], request["basedOn"]) == (
        "active",
        "order",
        [{"reference": f"CarePlan/{plan['id']}"}],
    )
    assert request["requester"] == {"reference": f"Organization/{home}"}
    assert request["performer"] == [{"reference": f"Organization/{referral['performer_id']}"}]
    assert request["reasonCode"] == [{"text": referral["reason"]}]
    rest_view = client.get(
        f"/api/v1/referrals/{referral['id']}/service-request", headers=auth(client, "doc-b1")
    ).json()
    assert {k: v for k, v in request.items() if k != "meta"} == rest_view  # one rendering

    for params in (
        {"patient": str(carol)},
        {"performer": f"Organization/{referral['performer_id']}"},
        {"requester": str(home)},
        {"status": "active"},
        {"code": "spirometry"},
        {"based-on": f"CarePlan/{plan['id']}"},
        {"identifier": referral["task_id"]},
        {"date": f"ge{days(-21)[:10]}"},
    ):
        assert ids(search(client, doc, "ServiceRequest", **params)) == [referral["id"]], params
    assert search(client, doc, "ServiceRequest", status="completed")["total"] == 0
    assert search(client, doc, "ServiceRequest", requester=str(world.org_id("HUB")))["total"] == 0
    included = search(client, doc, "ServiceRequest", _include="ServiceRequest:requester")
    assert ids(included, "include") == [str(home)]

    business = {"url": BUSINESS_STATUS_EXTENSION, "valueCode": "accepted"}
    others = [e for e in request["extension"] if e["url"] != BUSINESS_STATUS_EXTENSION]
    accepted = put(client, doc, {**request, "extension": [*others, business]})
    assert accepted.status_code == 200, accepted.text
    assert extensions(accepted.json())[BUSINESS_STATUS_EXTENSION] == "accepted"
    assert client.get(f"/api/v1/referrals/{referral['id']}", headers=auth(client, "doc-b1")).json()[
        "status"
    ] == ("accepted")
    completed = put(
        client, doc, {**accepted.json(), "status": "completed"}
    )  # the extension still says accepted
    assert completed.status_code == 200, completed.text
    assert valid(completed.json())["status"] == "completed" and "end" in completed.json()["occurrencePeriod"]
    task = search(client, doc, "Task", identifier="x", _id=referral["task_id"])  # unknown params are ignored
    assert task["entry"][0]["resource"]["status"] == "completed"  # the outcome closed the referral task
    assert "it is closed" in outcome(put(client, doc, {**completed.json(), "status": "revoked"}), 409)
    mismatch = {**request, "extension": [*others, {**business, "valueCode": "declined"}]}
    outcome(put(client, doc, mismatch), 422)
    assert "not supported" in outcome(post(client, doc, {**request, "id": None}), 405)


def test_visits_are_encounters(client: TestClient, world: World) -> None:
    doc = headers(client, "doc-a1")
    alice, facility = world.patients["alice"].id, world.org_id("CHC-A1")
    plan = post(client, doc, careplan(alice, "hypertension", period={"start": days(-10)})).json()
    body = encounter(alice, facility, 150, 95, identifier=[{"system": EVENT_SYSTEM, "value": "visit-0001"}])
    body["contained"] += [
        {
            "resourceType": "Observation",
            "id": "hr",
            "status": "final",
            "code": loinc("8867-4"),
            "valueQuantity": quantity(72, "/min"),
            "encounter": {"reference": "#"},
        },
        {
            "resourceType": "Observation",
            "id": "ldl",
            "status": "final",
            "code": {"coding": [{"system": VISIT_MEASURE_SYSTEM, "code": "ldl_mmol"}]},
            "valueQuantity": quantity(3.1, "mmol/L"),
            "encounter": {"reference": "#"},
        },
    ]
    created = post(client, doc, body)
    assert created.status_code == 201, created.text
    visit = valid(created.json())
    assert visit["id"] == "visit-0001" and visit["serviceProvider"] == {
        "reference": f"Organization/{facility}"
    }
    contained = {o["id"]: o for o in visit["contained"]}
    assert [c["valueQuantity"]["value"] for c in contained["bp"]["component"]] == [150, 95]
    assert [c["code"]["coding"][0]["code"] for c in contained["bp"]["component"]] == ["8480-6", "8462-4"]
    assert contained["heart-rate"]["valueQuantity"] == quantity(72, "/min")
    assert contained["ldl-mmol"]["category"][0]["coding"][0]["code"] == "laboratory"
    assert client.get("/fhir/Encounter/visit-0001", headers=doc).json() == visit
    repeat = post(client, doc, body)
    assert repeat.status_code == 200 and repeat.json()["id"] == "visit-0001"

    # the engine saw the visit, and the REST API's visits are Encounters
    rest = auth(client, "doc-a1")
    events = client.get(f"/api/v1/enrolments/{plan['id']}/events", headers=rest).json()
    assert [(e["id"], e["payload"]["sbp"]) for e in events if e["kind"] == "visit"] == [("visit-0001", 150)]
    assert client.get(f"/api/v1/enrolments/{plan['id']}", headers=rest).json()["last_visit_at"] is not None
    second = {
        "patient_id": str(alice),
        "facility_id": str(facility),
        "effective_at": days(0),
        "sbp": 128,
        "dbp": 82,
    }
    visit_id = client.post("/api/v1/visits", json=second, headers=rest).json()["event_id"]
    assert ids(search(client, doc, "Encounter", patient=str(alice), _sort="-date")) == [
        visit_id,
        "visit-0001",
    ]
    assert ids(search(client, doc, "Encounter", date=f"lt{days(-0.5)}")) == ["visit-0001"]
    assert ids(search(client, doc, "Encounter", identifier=f"{EVENT_SYSTEM}|visit-0001")) == ["visit-0001"]
    assert (
        search(client, doc, "Encounter", status="finished", **{"service-provider": str(facility)})["total"]
        == 2
    )
    assert search(client, doc, "Encounter", status="planned")["total"] == 0
    assert search(client, doc, "Encounter", _id="visit-0001,nope")["total"] == 1


def test_facility_scope_roles_and_scopes(client: TestClient, engine: Engine, world: World) -> None:
    a1, b1 = headers(client, "doc-a1"), headers(client, "doc-b1")
    alice, carol = world.patients["alice"].id, world.patients["carol"].id
    plan = post(client, a1, careplan(alice, "hypertension")).json()
    visit = post(client, a1, encounter(alice, world.org_id("CHC-A1"), 130, 80)).json()
    task = search(client, a1, "Task", patient=str(alice))["entry"][0]["resource"]
    post(client, b1, careplan(carol, "copd"))
    request = search(client, b1, "ServiceRequest")["entry"][0]["resource"]

    for path in (f"CarePlan/{plan['id']}", f"Task/{task['id']}", f"Encounter/{visit['id']}"):
        assert "not found in your facility scope" in outcome(client.get(f"/fhir/{path}", headers=b1), 404)
    outcome(client.get(f"/fhir/ServiceRequest/{request['id']}", headers=a1), 404)
    outcome(put(client, b1, {**task, "status": "completed"}), 404)
    outcome(put(client, a1, {**request, "status": "revoked"}), 404)
    for rtype in ("CarePlan", "Task", "Encounter"):
        assert search(client, b1, rtype, patient=str(alice))["total"] == 0
        included = search(client, b1, rtype, _include=f"{rtype}:patient")
        assert str(alice) not in ids(included, "include") + ids(included)
    assert ids(search(client, b1, "CarePlan", _include="CarePlan:subject"), "include") == [str(carol)]
    assert "does not exist in your facility scope" in outcome(
        post(client, b1, careplan(alice, "diabetes")), 422
    )

    manager = headers(client, "pm-b")  # programme manager over CNTY-B: reads carol's, writes nothing
    assert search(client, manager, "CarePlan")["total"] == 1
    assert "scopes do not allow create" in outcome(post(client, manager, careplan(carol, "diabetes")), 403)
    outcome(client.get("/fhir/CarePlan", headers=auth(client, "screener-hub")), 403)
    outcome(client.get("/fhir/Task", headers=auth(client, "partner")), 403)
    with Session(engine) as s:
        audited = set(
            s.execute(
                select(AuditEvent.action, AuditEvent.resource_type).where(AuditEvent.actor == "doc-a1")
            ).all()
        )
    assert {("create", "CarePlan"), ("create", "Encounter"), ("search", "Task")} <= audited


def test_bad_writes_are_operation_outcomes(client: TestClient, engine: Engine, world: World) -> None:
    doc = headers(client, "doc-a1")
    alice, facility = world.patients["alice"].id, world.org_id("CHC-A1")
    canonical = {"instantiatesCanonical": [f"{PLAN_DEFINITION}/hypertension|9"]}
    cases = [
        (careplan(alice, "rugby"), 422, "unknown programme"),
        ({**careplan(alice, "hypertension"), **canonical}, 422, "at version 1, not 9"),
        ({**careplan(alice, "diabetes"), **canonical}, 422, "must name one programme"),
        ({**careplan(alice, "hypertension"), "status": "draft"}, 422, "created active"),
        (
            careplan(alice, "hypertension", author={"reference": f"Organization/{world.org_id('HUB')}"}),
            422,
            "scope",
        ),
        (careplan(alice, "hypertension", description="x" * 201), 422, "CarePlan.description"),
        (careplan(alice, "hypertension", period={"start": "2026-01-05T09:00:00"}), 400, "period.start"),
        ({k: v for k, v in careplan(alice, "hypertension").items() if k != "subject"}, 400, "subject"),
        (encounter(alice, facility, 400, 80), 422, "outside the plausible range"),
        (encounter(alice, facility, 130, 80, status="planned"), 422, "must be finished"),
        (encounter(alice, facility, 130, 80, period={}), 422, "period.start"),
        (
            {k: v for k, v in encounter(alice, facility, 130, 80).items() if k != "serviceProvider"},
            422,
            "serviceP",
        ),
        (encounter(alice, world.org_id("CHC-B1"), 130, 80), 422, "not a facility in your scope"),
    ]
    kpa = encounter(alice, facility, 130, 80)
    kpa["contained"][0]["component"][0]["valueQuantity"] = quantity(17, "kPa")
    cases.append((kpa, 422, "UCUM mm[Hg]"))
    unknown = encounter(alice, facility, 130, 80)
    unknown["contained"][0]["component"][1]["code"] = loinc("2339-0")
    cases.append((unknown, 422, "not a measurement a visit records"))
    for body, status, reason in cases:
        assert reason in outcome(post(client, doc, body), status), reason
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Enrolment)) == 0  # nothing written


def test_capability_statement_and_patient_export(client: TestClient, world: World) -> None:
    cap = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    assert [i["code"] for i in cap["CarePlan"]["interaction"]] == ["read", "search-type", "create"]
    assert [i["code"] for i in cap["Task"]["interaction"]] == ["read", "search-type", "update"]
    assert [i["code"] for i in cap["ServiceRequest"]["interaction"]] == ["read", "search-type", "update"]
    assert [i["code"] for i in cap["Encounter"]["interaction"]] == ["read", "search-type", "create"]
    assert {"patient", "status", "category", "date"} <= {p["name"] for p in cap["CarePlan"]["searchParam"]}
    assert {"performer", "requester"} <= {p["name"] for p in cap["ServiceRequest"]["searchParam"]}
    assert cap["ServiceRequest"]["searchInclude"] == [
        "ServiceRequest:subject",
        "ServiceRequest:patient",
        "ServiceRequest:requester",
    ]

    doc = headers(client, "doc-a1")
    alice = world.patients["alice"].id
    post(client, doc, careplan(alice, "hypertension"))
    post(client, doc, encounter(alice, world.org_id("CHC-A1"), 130, 80))
    post(client, headers(client, "doc-b1"), careplan(world.patients["carol"].id, "copd"))  # not in a1's scope
    kick = client.get("/fhir/Patient/$export", headers=auth(client, "doc-a1"))
    assert kick.status_code == 202, kick.text
    deadline = time.monotonic() + 60
    while (status := client.get(kick.headers["content-location"], headers=doc)).status_code == 202:
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.1)
    counts = {o["type"]: o["count"] for o in status.json()["output"]}
    assert {k: counts.get(k) for k in ("CarePlan", "Task", "Encounter", "ServiceRequest")} == {
        "CarePlan": 1,
        "Task": 2,
        "Encounter": 1,
        "ServiceRequest": 0,  # carol's referral is outside the scope
    }
    lines = client.get(
        next(o["url"] for o in status.json()["output"] if o["type"] == "CarePlan"), headers=doc
    ).content.splitlines()
    assert orjson.loads(lines[0])["subject"] == {"reference": f"Patient/{alice}"}
    assert uuid.UUID(orjson.loads(lines[0])["id"])
