"""REST behaviour through the app: Observation mapping, versions and ETags, conditional create,
bad input (always an OperationOutcome with a 4xx), lenient/strict search, SMART scopes and the
facility scope on every route, the audit trail. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.devices.models import DeadLetter, Reading
from medloop.fhir.models import FhirResource
from medloop.people.models import Patient
from tests.devices.conftest import Fleet
from tests.factories import PASSWORD, auth
from tests.fhir.conftest import bp, condition, entry, patient, spo2

FHIR = {"content-type": "application/fhir+json"}


def count(fleet: Fleet, model: type) -> int:
    with Session(fleet.engine) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)  # type: ignore[arg-type]


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    return body


def scoped_token(client: TestClient, username: str, scope: str) -> dict[str, str]:
    data = {"grant_type": "password", "username": username, "password": PASSWORD, "scope": scope}
    return {"Authorization": f"Bearer {client.post('/api/v1/auth/token', data=data).json()['access_token']}"}


def test_observations_vital_signs_mapping_and_search(client: TestClient, fleet: Fleet) -> None:
    headers = {**auth(client, "doc-cnty-a"), **FHIR}  # scope: alice (BP-1), bob (GLU-1)
    alice = str(fleet.world.patients["alice"].id)
    reading = orjson.dumps(bp("BP-1", 182, 95, 30))
    created = client.post("/fhir/Observation", content=reading, headers=headers)
    assert created.status_code == 201, created.text
    obs = created.json()
    assert obs["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
    assert [c["code"]["coding"][0]["code"] for c in obs["component"]] == ["8480-6", "8462-4"]
    assert obs["subject"]["reference"] == f"Patient/{alice}" and created.headers["etag"] == 'W/"1"'
    again = client.post("/fhir/Observation", content=reading, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == obs["id"]  # the pipeline's de-duplication
    read = client.get(f"/fhir/Observation/{obs['id']}", headers=headers)
    assert read.status_code == 200 and read.json()["component"][1]["valueQuantity"]["value"] == 95
    alerts = client.get("/api/v1/devices/alerts", headers=headers).json()
    assert alerts["total"] == 1  # the pipeline's alert rules ran (systolic >= 180)

    admin = {**auth(client, "admin"), **FHIR}
    sat = client.post("/fhir/Observation", content=orjson.dumps(spo2("OX-1", 97, 20)), headers=admin).json()
    codes = [c["code"] for c in sat["code"]["coding"]]
    assert codes == ["59408-5", "2708-6"]  # the vital-signs profile wants both
    by_code = client.get(
        "/fhir/Observation", params={"code": "http://loinc.org|2708-6"}, headers=admin
    ).json()
    assert [e["resource"]["id"] for e in by_code["entry"]] == [sat["id"]]
    window = client.get(
        "/fhir/Observation", params=[("date", "ge2000-01-01"), ("date", "lt2000-02-01")], headers=admin
    )
    assert window.json()["total"] == 0
    recent = client.get(
        "/fhir/Observation", params={"date": "gt2000-01-01", "category": "vital-signs"}, headers=admin
    )
    assert recent.json()["total"] == 2
    wrong_subject = bp(
        "BP-1", 120, 80, 10, subject={"reference": f"Patient/{fleet.world.patients['bob'].id}"}
    )
    refused = client.post("/fhir/Observation", content=orjson.dumps(wrong_subject), headers=admin)
    assert "not the patient the device was bound to" in outcome(refused, 422)["issue"][0]["diagnostics"]
    implausible = client.post(
        "/fhir/Observation", content=orjson.dumps(bp("BP-1", 400, 80, 9)), headers=admin
    )
    outcome(implausible, 422)
    assert count(fleet, DeadLetter) == 2  # refused readings are kept with their reason


def test_versions_etags_and_conditional_create(client: TestClient, fleet: Fleet) -> None:
    headers = {**auth(client, "doc-a1"), **FHIR}
    facility = fleet.world.org_id("CHC-A1")
    mrn = {"system": f"https://medloop.dev/fhir/sid/mrn/{facility}", "value": "A-0001"}
    body = patient("Zhao", "Min", facility, identifier=[mrn])
    created = client.post("/fhir/Patient", content=orjson.dumps(body), headers=headers)
    assert created.status_code == 201 and created.headers["location"].endswith("/_history/1")
    rid = created.json()["id"]
    criteria = {**headers, "If-None-Exist": f"identifier={mrn['system']}|A-0001"}
    same = client.post("/fhir/Patient", content=orjson.dumps(body), headers=criteria)
    assert same.status_code == 200 and same.json()["id"] == rid

    changed = {**created.json(), "gender": "male"}
    stale = client.put(
        f"/fhir/Patient/{rid}", content=orjson.dumps(changed), headers={**headers, "If-Match": 'W/"7"'}
    )
    outcome(stale, 412)
    ok = client.put(
        f"/fhir/Patient/{rid}", content=orjson.dumps(changed), headers={**headers, "If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'

    cond = client.post("/fhir/Condition", content=orjson.dumps(condition(f"Patient/{rid}")), headers=headers)
    assert cond.status_code == 201, cond.text
    cid = cond.json()["id"]
    found = client.get(
        "/fhir/Condition", params={"code": "http://snomed.info/sct|38341003", "patient": rid}, headers=headers
    )
    assert found.json()["total"] == 1
    deleted = client.delete(f"/fhir/Condition/{cid}", headers=headers)
    assert deleted.status_code == 204
    outcome(client.get(f"/fhir/Condition/{cid}", headers=headers), 410)
    outcome(client.delete(f"/fhir/Patient/{rid}", headers=headers), 405)


def test_bad_input_is_an_operation_outcome(client: TestClient, fleet: Fleet) -> None:
    headers = {**auth(client, "doc-a1"), **FHIR}
    alice = str(fleet.world.patients["alice"].id)
    assert (
        outcome(client.post("/fhir/Patient", content=b"{nope", headers=headers), 400)["issue"][0]["code"]
        == "structure"
    )
    outcome(
        client.post("/fhir/Patient", content=orjson.dumps(condition(f"Patient/{alice}")), headers=headers),
        400,
    )
    bad = outcome(
        client.post(
            "/fhir/Patient",
            content=orjson.dumps({"resourceType": "Patient", "birthDate": "14/03/1958"}),
            headers=headers,
        ),
        400,
    )
    assert any("birthDate" in str(i.get("expression")) for i in bad["issue"])
    outcome(client.get("/fhir/Nonsense/1", headers=headers), 404)
    outcome(client.get("/fhir/Patient", params={"birthdate": "yesterday"}, headers=headers), 400)

    lenient = client.get("/fhir/Patient", params={"colour": "blue"}, headers=headers)
    assert lenient.status_code == 200
    assert lenient.json()["entry"][-1]["search"]["mode"] == "outcome"
    strict = client.get(
        "/fhir/Patient", params={"colour": "blue"}, headers={**headers, "Prefer": "handling=strict"}
    )
    assert outcome(strict, 400)["issue"][0]["code"] == "not-supported"

    before = (count(fleet, FhirResource), count(fleet, Patient), count(fleet, Reading))
    broken = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(patient("Sun", "Li", fleet.world.org_id("CHC-A1")), f"urn:uuid:{uuid.uuid4()}"),
            entry(condition(f"urn:uuid:{uuid.uuid4()}")),
        ],
    }
    assert outcome(client.post("/fhir", json=broken, headers=headers), 400)["issue"][0]["expression"] == [
        "Bundle.entry[1]"
    ]
    missing = {
        **broken,
        "entry": [
            broken["entry"][0],
            entry(condition(f"Patient/{uuid.uuid4()}")),
            entry(bp("BP-1", 120, 80, 3)),
        ],
    }
    outcome(client.post("/fhir", json=missing, headers=headers), 422)
    assert (
        count(fleet, FhirResource),
        count(fleet, Patient),
        count(fleet, Reading),
    ) == before  # nothing written

    batch = {
        **broken,
        "type": "batch",
        "entry": [
            entry(bp("BP-1", 120, 80, 3)),
            entry(condition(f"Patient/{uuid.uuid4()}")),
            "not an entry",
            {"request": {"method": "PATCH", "url": "Patient/x"}},
            {"request": {"method": "PUT", "url": "Patient/x"}},
            entry(bp("BP-1", 121, 81, 2)),
        ],
    }
    response = client.post("/fhir", json=batch, headers=headers).json()
    assert [e["response"]["status"] for e in response["entry"]] == [
        "201 Created",
        "422 Unprocessable Entity",
        "400 Bad Request",
        "400 Bad Request",
        "400 Bad Request",
        "201 Created",
    ]
    diagnostics = [e["response"]["outcome"]["issue"][0]["diagnostics"] for e in response["entry"][2:5]]
    assert diagnostics == [
        "Bundle.entry[2] must be an object",
        "Bundle.entry[3].request.method 'PATCH' is not supported",
        "Bundle.entry[4] (PUT) needs a resource",
    ]
    # the same malformed entry fails a transaction whole, naming it
    transaction = {**batch, "type": "transaction", "entry": [entry(bp("BP-1", 122, 82, 1)), "not an entry"]}
    before = count(fleet, Reading)
    refused = outcome(client.post("/fhir", json=transaction, headers=headers), 400)
    assert refused["issue"][0]["diagnostics"] == "Bundle.entry[1] must be an object"
    assert count(fleet, Reading) == before


def test_facility_scope_on_every_route(client: TestClient, fleet: Fleet) -> None:
    admin = {**auth(client, "admin"), **FHIR}
    alice = str(fleet.world.patients["alice"].id)
    alice_obs = client.post(
        "/fhir/Observation", content=orjson.dumps(bp("BP-1", 130, 85, 5)), headers=admin
    ).json()
    client.post("/fhir/Observation", content=orjson.dumps(spo2("OX-1", 96, 5)), headers=admin)  # carol's
    other = auth(client, "doc-b1")  # scope: CHC-B1 (carol)
    outcome(client.get(f"/fhir/Patient/{alice}", headers=other), 404)
    outcome(client.get(f"/fhir/Observation/{alice_obs['id']}", headers=other), 404)
    names = client.get("/fhir/Patient", headers=other).json()
    assert [e["resource"]["id"] for e in names.get("entry", [])] == [str(fleet.world.patients["carol"].id)]
    assert client.get("/fhir/Observation", params={"patient": alice}, headers=other).json()["total"] == 0
    included = client.get(
        "/fhir/Observation", params={"_include": "Observation:subject"}, headers=other
    ).json()
    ids = {e["resource"]["id"] for e in included["entry"]}
    assert alice not in ids and str(fleet.world.patients["carol"].id) in ids
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{alice}"}}],
    }
    assert (
        client.post("/fhir", json=bundle, headers=other).json()["entry"][0]["response"]["status"]
        == "404 Not Found"
    )
    device = client.get("/fhir/Device", params={"identifier": "BP-1"}, headers=other).json()["entry"][0][
        "resource"
    ]
    assert "patient" not in device  # the binding names a patient outside the scope


def test_smart_scopes_narrow_access(client: TestClient, fleet: Fleet) -> None:
    screener = auth(client, "screener-hub")  # user/Patient.read|write, user/Observation.write, ...
    assert client.get("/fhir/Patient", headers=screener).status_code == 200
    outcome(client.get("/fhir/Observation", headers=screener), 403)  # may write readings, not read them
    read_only = scoped_token(client, "doc-a1", "user/*.read")
    assert client.get("/fhir/Observation", headers=read_only).status_code == 200
    body = orjson.dumps(patient("Qian", "Yu", fleet.world.org_id("CHC-A1")))
    outcome(client.post("/fhir/Patient", content=body, headers={**read_only, **FHIR}), 403)
    outcome(client.get("/fhir/AuditEvent", headers=read_only), 403)  # admins only
    outcome(client.get("/fhir/Patient"), 401)
    assert client.get("/fhir/metadata").status_code == 200


def test_every_access_is_audited(client: TestClient, fleet: Fleet) -> None:
    headers = auth(client, "doc-a1")
    alice = str(fleet.world.patients["alice"].id)
    client.get(f"/fhir/Patient/{alice}", headers=headers)
    client.get("/fhir/Patient", params={"name": "A"}, headers=headers)
    with Session(fleet.engine) as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.actor == "doc-a1")).all()
    assert {(r.action, r.resource_type, str(r.patient_id)) for r in rows} >= {
        ("read", "Patient", alice),
        ("search", "Patient", alice),
    }
    events = client.get(
        "/fhir/AuditEvent", params={"patient": alice, "_sort": "-date"}, headers=auth(client, "admin")
    )
    assert events.status_code == 200 and events.json()["total"] >= 2
    assert events.json()["entry"][0]["resource"]["resourceType"] == "AuditEvent"
