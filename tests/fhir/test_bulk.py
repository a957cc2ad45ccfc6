"""Bulk Data: $export (system, Patient, Group) with kick-off / status / NDJSON download, scoped
and audited; NDJSON import (the $import endpoint and `medloop fhir import`) that reports bad lines
by number and keeps the good ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from medloop.auth.models import AuditEvent
from medloop.devices.models import Reading
from medloop.fhir import bulk
from medloop.fhir.cli import app as fhir_cli
from tests.devices.conftest import Fleet
from tests.factories import auth
from tests.fhir.conftest import bp, condition, spo2


@pytest.fixture(autouse=True)
def bulk_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(bulk.BULK_DIR_ENV, str(tmp_path / "bulk"))
    return tmp_path / "bulk"


def finished(client: TestClient, location: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status = client.get(location, headers=headers)
        if status.status_code != 202:
            assert status.status_code == 200, status.text
            manifest: dict[str, Any] = status.json()
            return manifest
        assert "x-progress" in status.headers
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.1)


def ndjson(client: TestClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/fhir+ndjson"
    )
    return [orjson.loads(line) for line in response.content.splitlines() if line]


def load(client: TestClient, fleet: Fleet) -> None:
    admin = {**auth(client, "admin"), "content-type": "application/fhir+json"}
    for i in range(3):
        client.post("/fhir/Observation", content=orjson.dumps(bp("BP-1", 120 + i, 80, 30 - i)), headers=admin)
    client.post("/fhir/Observation", content=orjson.dumps(spo2("OX-1", 96, 5)), headers=admin)
    carol = fleet.world.patients["carol"].id
    client.post("/fhir/Condition", content=orjson.dumps(condition(f"Patient/{carol}")), headers=admin)


def test_exports_are_async_scoped_and_audited(client: TestClient, fleet: Fleet) -> None:
    load(client, fleet)
    admin = auth(client, "admin")
    kick = client.get("/fhir/$export", params={"_type": "Patient,Observation,Organization"}, headers=admin)
    assert kick.status_code == 202, kick.text
    manifest = finished(client, kick.headers["content-location"], admin)
    assert manifest["requiresAccessToken"] is True
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Patient": 4, "Observation": 4, "Organization": 6}
    observations = ndjson(
        client, next(o["url"] for o in manifest["output"] if o["type"] == "Observation"), admin
    )
    assert {o["resourceType"] for o in observations} == {"Observation"} and len(observations) == 4

    clinician = auth(client, "doc-a1")  # scope: CHC-A1 (alice)
    group = client.get(f"/fhir/Group/{fleet.world.org_id('CNTY-A')}/$export", headers=clinician)
    assert group.status_code == 202, group.text
    exported = finished(client, group.headers["content-location"], clinician)
    files = {o["type"]: ndjson(client, o["url"], clinician) for o in exported["output"]}
    alice = str(fleet.world.patients["alice"].id)
    assert [p["id"] for p in files["Patient"]] == [alice]  # bob is in CNTY-A but not in doc-a1's scope
    assert {o["subject"]["reference"] for o in files["Observation"]} == {f"Patient/{alice}"}
    assert files.get("Condition", []) == []

    outsider = auth(client, "doc-b1")  # carol only: a CNTY-A group export holds nobody
    other = client.get(f"/fhir/Group/{fleet.world.org_id('CNTY-A')}/$export", headers=outsider)
    nothing = finished(client, other.headers["content-location"], outsider)
    assert all(o["count"] == 0 for o in nothing["output"])
    stranger = client.get(kick.headers["content-location"], headers=outsider)
    assert stranger.status_code == 404  # a job is its requester's

    patients = client.get("/fhir/Patient/$export", params={"_type": "Condition"}, headers=outsider)
    conditions = finished(client, patients.headers["content-location"], outsider)["output"]
    assert [o["count"] for o in conditions] == [1]
    bad = client.get("/fhir/$export", params={"_type": "Nonsense"}, headers=admin)
    assert bad.status_code == 404 and bad.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/$export", params={"_type": "AuditEvent"}, headers=clinician).status_code == 403
    with Session(fleet.engine) as s:
        exported_patients = set(
            s.scalars(
                select(AuditEvent.patient_id).where(
                    AuditEvent.action == "export", AuditEvent.actor == "doc-a1"
                )
            )
        )
    assert exported_patients - {None} == {fleet.world.patients["alice"].id}


def test_import_reports_bad_lines_and_keeps_good_ones(client: TestClient, fleet: Fleet) -> None:
    admin = auth(client, "admin")
    carol = fleet.world.patients["carol"].id
    lines = [
        orjson.dumps(bp("BP-1", 121, 79, 50)),
        b"{not json",
        orjson.dumps(bp("BP-1", 420, 79, 49)),  # implausible
        orjson.dumps(condition(f"Patient/{carol}")),
        orjson.dumps({"resourceType": "Condition", "subject": {"reference": "Patient/nobody"}}),
        orjson.dumps(spo2("OX-1", 95, 48)),
    ]
    body = b"\n".join(lines) + b"\n"
    kick = client.post(
        "/fhir/$import", content=body, headers={**admin, "content-type": "application/fhir+ndjson"}
    )
    assert kick.status_code == 202, kick.text
    manifest = finished(client, kick.headers["content-location"], admin)
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Condition": 1, "Observation": 2}
    errors = ndjson(client, manifest["error"][0]["url"], admin)
    where = sorted(e["issue"][0]["location"][0] for e in errors)
    assert where == ["input.ndjson:2", "input.ndjson:3", "input.ndjson:5"]
    wrong = client.post("/fhir/$import", content=body, headers={**admin, "content-type": "application/json"})
    assert wrong.status_code == 415


def test_cli_import_and_export(
    fleet: Fleet, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLOOP_DATABASE_URL", db_url)
    from medloop.settings import get_settings

    get_settings.cache_clear()
    source = tmp_path / "in"
    source.mkdir()
    (source / "obs.ndjson").write_bytes(
        b"\n".join(orjson.dumps(bp("BP-1", 110 + i, 70, 90 - i)) for i in range(5)) + b"\n[]\n"
    )
    runner = CliRunner()
    result = runner.invoke(fhir_cli, ["import", str(source)])
    assert result.exit_code == 1 and "Observation: 5 created" in result.output
    assert "obs.ndjson:6:" in result.output
    with Session(fleet.engine) as s:
        assert s.scalar(select(func.count()).select_from(Reading)) == 10  # 5 panels, 2 rows each
    out = tmp_path / "out"
    exported = runner.invoke(fhir_cli, ["export", str(out), "--type", "Observation", "--group", "CHC-A1"])
    assert exported.exit_code == 0, exported.output
    assert len((out / "Observation.ndjson").read_bytes().splitlines()) == 5
    get_settings.cache_clear()
