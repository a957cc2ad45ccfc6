"""HTTP: /api/v1/readings, the registry endpoints and the FHIR entry points, on both databases.
Bad input always gets a 4xx with a reason, never a 5xx."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from medloop.devices.models import DeadLetter, Reading
from medloop.store.base import utcnow
from tests.devices.conftest import Fleet, count
from tests.factories import auth


def iso(minutes_ago: float) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).isoformat()


def hr(serial: str | None, minutes_ago: float, value: float = 70) -> dict[str, Any]:
    reading: dict[str, Any] = {"type": "heart_rate", "value": value, "unit": "/min", "at": iso(minutes_ago)}
    if serial:
        reading["device"] = serial
    return reading


def test_batch_with_per_item_outcomes_and_idempotent_retry(client: TestClient, fleet: Fleet) -> None:
    headers = auth(client, "admin")
    batch = {"readings": [hr("BP-1", 10), hr("BP-1", 9, 400), hr("NOPE", 8), hr("OX-1", 7)]}
    response = client.post("/api/v1/readings", json=batch, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stored"], body["rejected"], body["duplicate"]) == (2, 2, 0)
    assert [i["status"] for i in body["items"]] == ["stored", "rejected", "rejected", "stored"]
    assert (
        body["items"][1]["reason"] == "implausible"
        and "outside plausible range" in body["items"][1]["detail"]
    )
    again = client.post("/api/v1/readings", json=batch, headers=headers).json()
    assert (again["stored"], again["duplicate"]) == (0, 2)
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 2 and count(s, DeadLetter) == 2


def test_clinician_only_for_patients_in_scope(client: TestClient, fleet: Fleet) -> None:
    headers = auth(client, "doc-a1")  # scope: CHC-A1 (alice, BP-1)
    body = client.post("/api/v1/readings", json=[hr("BP-1", 5), hr("OX-1", 5)], headers=headers).json()
    assert [(i["status"], i.get("reason")) for i in body["items"]] == [
        ("stored", None),
        ("rejected", "forbidden"),
    ]
    only_bad = client.post("/api/v1/readings", json=[hr("OX-1", 4)], headers=headers)
    assert only_bad.status_code == 422 and only_bad.json()["items"][0]["reason"] == "forbidden"


def test_device_service_user_submits_for_its_own_device(client: TestClient, fleet: Fleet) -> None:
    admin = auth(client, "admin")
    created = client.post(
        "/api/v1/devices",
        json={"serial": "HOME-1", "kind": "bp_monitor", "service_username": "device-1"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    alice = str(fleet.world.patients["alice"].id)
    bound = client.post(
        "/api/v1/devices/HOME-1/bindings",
        json={"patient_id": alice, "start_at": iso(600)},
        headers=auth(client, "doc-a1"),
    )
    assert bound.status_code == 201, bound.text
    device = auth(client, "device-1")
    ok = client.post("/api/v1/readings", json={"readings": [hr(None, 3)]}, headers=device)
    assert ok.status_code == 200 and ok.json()["stored"] == 1
    other = client.post("/api/v1/readings", json=[hr("OX-1", 3)], headers=device)
    assert other.status_code == 422 and other.json()["items"][0]["reason"] == "serial_mismatch"


def test_device_token_and_revocation(client: TestClient, fleet: Fleet) -> None:
    admin = auth(client, "admin")
    issued = client.post("/api/v1/devices/OX-1/credentials", json={"kind": "token"}, headers=admin)
    assert issued.status_code == 201, issued.text
    token = issued.json()["secret"]
    headers = {"Authorization": f"Bearer {token}"}
    spo2 = {"type": "spo2", "value": 96, "unit": "%", "at": iso(2)}
    assert client.post("/api/v1/readings", json=spo2, headers=headers).json()["stored"] == 1
    revoked = client.post(f"/api/v1/devices/credentials/{issued.json()['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = client.post("/api/v1/readings", json={**spo2, "at": iso(1)}, headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    forged = client.post("/api/v1/readings", json=spo2, headers={"Authorization": f"Bearer {token[:-2]}xx"})
    assert forged.status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"42", 422),
        (b'"text"', 422),
        (b"[]", 422),
        (b'{"readings": []}', 422),
        (b'{"readings": "many"}', 422),
        (b'{"device": 7, "readings": [{}]}', 422),
        (b'{"readings": [{"type": "heart_rate", "value": [1], "unit": "/min", "at": "x"}]}', 422),
        (b'{"readings": [null, 1, "x", {"value": null}]}', 422),
        (b'{"readings": [{"value": 1e999}]}', 400),
        (b'{"resourceType": "Bundle", "type": "document", "entry": []}', 422),
        (b'{"resourceType": "Observation"}', 422),
        (b"\xff\xfe garbage", 400),
    ],
)
def test_bad_input_is_4xx_with_a_reason(client: TestClient, fleet: Fleet, body: bytes, status: int) -> None:
    response = client.post(
        "/api/v1/readings",
        content=body,
        headers={**auth(client, "admin"), "content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"]


def test_auth_and_roles(client: TestClient, fleet: Fleet) -> None:
    assert client.post("/api/v1/readings", json=[hr("BP-1", 1)]).status_code == 401
    assert (
        client.post("/api/v1/readings", json=[hr("BP-1", 1)], headers=auth(client, "partner")).status_code
        == 403
    )
    bad = {"Authorization": "Bearer mldt.nothex.secret"}
    assert client.post("/api/v1/readings", json=[hr("BP-1", 1)], headers=bad).status_code == 401


def test_oversized_batch_is_413(client: TestClient, fleet: Fleet) -> None:
    reading = hr("BP-1", 1)
    response = client.post(
        "/api/v1/readings", json={"readings": [reading] * 10_001}, headers=auth(client, "admin")
    )
    assert response.status_code == 413 and "10000" in response.json()["detail"]


def test_alerts_are_listed_in_scope_and_acknowledged(client: TestClient, fleet: Fleet) -> None:
    admin = auth(client, "admin")
    batch = [
        {"device": "BP-1", "type": "bp", "systolic": 190, "diastolic": 100, "unit": "mmHg", "at": iso(5)},
        {"device": "OX-1", "type": "spo2", "value": 85, "unit": "%", "at": iso(5)},
    ]
    assert client.post("/api/v1/readings", json=batch, headers=admin).json()["alerts"] == 2
    doc = auth(client, "doc-a1")
    page = client.get("/api/v1/devices/alerts", headers=doc).json()
    assert [a["rule_id"] for a in page["items"]] == ["bp-critical-systolic"]
    alert_id = page["items"][0]["id"]
    acked = client.post(f"/api/v1/devices/alerts/{alert_id}/acknowledge", headers=doc)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert client.get("/api/v1/devices/alerts", headers=doc).json()["total"] == 0
    other = client.post(f"/api/v1/devices/alerts/{alert_id}/acknowledge", headers=auth(client, "doc-b1"))
    assert other.status_code == 404


def test_registry_endpoints(client: TestClient, fleet: Fleet) -> None:
    admin, doc = auth(client, "admin"), auth(client, "doc-a1")
    assert (
        client.post(
            "/api/v1/devices", json={"serial": "BP-1", "kind": "bp_monitor"}, headers=admin
        ).status_code
        == 409
    )
    assert (
        client.post(
            "/api/v1/devices", json={"serial": "a/b", "kind": "bp_monitor"}, headers=admin
        ).status_code
        == 400
    )
    assert (
        client.post("/api/v1/devices", json={"serial": "X", "kind": "toaster"}, headers=admin).status_code
        == 422
    )
    assert (
        client.post("/api/v1/devices", json={"serial": "X", "kind": "scale"}, headers=doc).status_code == 403
    )
    carol = str(fleet.world.patients["carol"].id)
    assert (
        client.post("/api/v1/devices/IDLE-1/bindings", json={"patient_id": carol}, headers=doc).status_code
        == 404
    )
    alice = str(fleet.world.patients["alice"].id)
    assert (
        client.post("/api/v1/devices/IDLE-1/bindings", json={"patient_id": alice}, headers=doc).status_code
        == 201
    )
    unbound = client.post("/api/v1/devices/IDLE-1/unbind", json={}, headers=doc)
    assert unbound.status_code == 200 and unbound.json()["end_at"]
    assert client.post("/api/v1/devices/IDLE-1/unbind", json={}, headers=doc).status_code == 404
    assert (
        client.post("/api/v1/devices/NOPE/bindings", json={"patient_id": alice}, headers=doc).status_code
        == 404
    )
    mqtt = client.post("/api/v1/devices/BP-1/credentials", json={"kind": "mqtt"}, headers=admin).json()
    assert mqtt["username"] == "BP-1" and len(mqtt["secret"]) >= 24


def test_dead_letters_list_and_replay(client: TestClient, fleet: Fleet) -> None:
    admin = auth(client, "admin")
    client.post("/api/v1/readings", json=[hr("BP-1", 3), hr("LATER-1", 3)], headers=admin)
    assert client.get("/api/v1/devices/dead-letters", headers=auth(client, "doc-a1")).status_code == 403
    (letter,) = client.get("/api/v1/devices/dead-letters", headers=admin).json()
    assert letter["reason"] == "unknown_device" and letter["payload"]["device"] == "LATER-1"
    client.post("/api/v1/devices", json={"serial": "LATER-1", "kind": "pulse_oximeter"}, headers=admin)
    client.post(
        "/api/v1/devices/LATER-1/bindings",
        json={"patient_id": str(fleet.world.patients["dan"].id), "start_at": iso(60)},
        headers=admin,
    )
    replay = client.post("/api/v1/devices/dead-letters/replay", json={}, headers=admin)
    assert replay.json() == {"replayed": 1, "still_failing": 0}
    assert client.get("/api/v1/devices/dead-letters", headers=admin).json() == []


def observation(serial: str, code: str, value: float, unit: str, minutes_ago: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": iso(minutes_ago),
        "device": {"identifier": {"value": serial}},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def test_fhir_observation(client: TestClient, fleet: Fleet) -> None:
    headers = {**auth(client, "admin"), "content-type": "application/fhir+json"}
    obs = observation("OX-1", "59408-5", 97, "%", 3)
    created = client.post("/fhir/Observation", content=orjson.dumps(obs), headers=headers)
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith("/fhir/Observation/") and created.json()["id"]
    again = client.post("/fhir/Observation", content=orjson.dumps(obs), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    bad = client.post(
        "/fhir/Observation",
        content=orjson.dumps({**obs, "valueQuantity": {"value": 30, "unit": "%"}}),
        headers=headers,
    )
    assert bad.status_code == 422 and bad.json()["resourceType"] == "OperationOutcome"
    garbage = client.post("/fhir/Observation", content=b"{", headers=headers)
    assert garbage.status_code == 400 and garbage.json()["resourceType"] == "OperationOutcome"


def test_fhir_batch_and_transaction(client: TestClient, fleet: Fleet) -> None:
    headers = auth(client, "admin")
    good, bad = observation("OX-1", "59408-5", 97, "%", 3), observation("OX-1", "59408-5", 300, "%", 2)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": good}, {"resource": bad}]}
    response = client.post("/fhir", json=batch, headers=headers)
    assert response.status_code == 200 and response.json()["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "422 Unprocessable Entity"]
    other = observation("OX-1", "59408-5", 95, "%", 1)
    txn = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": other}, {"resource": bad}]}
    failed = client.post("/fhir", json=txn, headers=headers)
    assert failed.status_code == 422 and failed.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 1
    txn["entry"] = [{"resource": other}]
    assert client.post("/fhir", json=txn, headers=headers).json()["type"] == "transaction-response"
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 2
