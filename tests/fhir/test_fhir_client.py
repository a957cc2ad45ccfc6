"""A real FHIR client (fhirpy, over HTTP) against the running server: capability, create, search,
paging, update, transaction with urn:uuid references, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from tests.devices.conftest import Fleet
from tests.fhir.conftest import Live, bp, condition, entry, patient


def client_for(live: Live, username: str) -> SyncFHIRClient:
    return SyncFHIRClient(live.url, authorization=f"Bearer {live.token(username)}")


def test_capability_statement_tells_the_truth(live: Live) -> None:
    cap = httpx.get(f"{live.url}/metadata", timeout=60)  # generous: CI machines are shared
    assert cap.status_code == 200 and cap.headers["content-type"].startswith("application/fhir+json")
    body = cap.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    wanted = {
        "Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Device", "Observation",
        "Condition", "Encounter", "CarePlan", "Task", "ServiceRequest", "RiskAssessment",
        "QuestionnaireResponse", "AuditEvent",
    }  # fmt: skip
    assert wanted <= set(resources)
    assert [i["code"] for i in resources["AuditEvent"]["interaction"]] == ["read", "search-type"]
    assert {"code", "date", "patient", "category"} <= {
        p["name"] for p in resources["Observation"]["searchParam"]
    }
    assert {i["code"] for i in body["rest"][0]["interaction"]} == {"transaction", "batch"}


def test_create_search_page_update_and_transaction(live: Live, fleet: Fleet) -> None:
    fhir = client_for(live, "doc-a1")  # scope: CHC-A1 (alice, device BP-1)
    facility = fleet.world.org_id("CHC-A1")

    created = fhir.resource("Patient", **patient("Wang", "Fang", facility)).save()
    assert created.id and created["meta"]["versionId"] == "1"
    found = fhir.resources("Patient").search(name="Wang").fetch_all()
    assert [p.id for p in found] == [created.id]
    assert fhir.resources("Patient").search(birthdate__ge="1958-03-01", gender="female").count() == 1

    created["name"] = [{"use": "official", "family": "Wang", "given": ["Fang-Hua"]}]
    created.save()  # PUT
    again = fhir.reference("Patient", created.id).to_resource()
    assert again["name"][0]["given"] == ["Fang-Hua"] and again["meta"]["versionId"] == "2"

    # a transaction: a Condition for a patient created in the same Bundle, and 25 BP readings
    alice = str(fleet.world.patients["alice"].id)
    new_patient = f"urn:uuid:{uuid.uuid4()}"
    entries = [
        entry(condition(new_patient), f"urn:uuid:{uuid.uuid4()}"),
        entry(patient("Li", "Lei", facility), new_patient),
    ] + [
        entry(bp("BP-1", 120 + i, 80, 200 - i, subject={"reference": f"Patient/{alice}"})) for i in range(25)
    ]
    response = fhir.execute(
        "", method="post", data={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created"] * 27
    condition_id = response["entry"][0]["response"]["location"].split("/")[1]
    stored = fhir.reference("Condition", condition_id).to_resource()
    li = response["entry"][1]["response"]["location"].split("/")[1]
    assert stored["subject"]["reference"] == f"Patient/{li}"

    # paging: 25 readings, 10 per page, the client follows the next links
    search = fhir.resources("Observation").search(patient=alice, code="85354-9").sort("-date").limit(10)
    first_page = search.fetch()
    assert len(first_page) == 10
    everything = search.fetch_all()
    assert len(everything) == 25 and len({o.id for o in everything}) == 25
    assert everything[0]["component"][0]["valueQuantity"]["value"] == 144  # newest first
    codes = [c["code"]["coding"][0]["code"] for c in everything[0]["component"]]
    assert codes == ["8480-6", "8462-4"]

    # _include of the subject
    raw = (
        fhir.resources("Observation")
        .search(patient=alice)
        .include("Observation", "subject")
        .limit(5)
        .fetch_raw()
    )
    modes = [e["search"]["mode"] for e in raw.entry]
    assert modes == ["match"] * 5 + ["include"] and raw.entry[-1].resource.id == alice


def test_scope_holds_for_a_real_client(live: Live, fleet: Fleet) -> None:
    other = client_for(live, "doc-b1")  # scope: CHC-B1 (carol)
    alice = str(fleet.world.patients["alice"].id)
    with pytest.raises(ResourceNotFound):
        other.reference("Patient", alice).to_resource()
    assert other.resources("Patient").fetch_all() == [] or {
        p.id for p in other.resources("Patient").fetch_all()
    } == {str(fleet.world.patients["carol"].id)}
    with pytest.raises(OperationOutcome):
        other.resource("Condition", **condition(f"Patient/{alice}")).save()
