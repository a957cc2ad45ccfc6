"""Logs carry ids, routes and counts, never patient data."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from medloop.logging import JsonFormatter
from tests.factories import World, auth


def test_request_logs_contain_no_patient_data(
    client: TestClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = auth(client, "doc-a1")
    body = {
        "family_name": "欧阳",
        "given_name": "秀兰",
        "sex": "F",
        "birth_date": "1958-02-03",
        "phone": "13987654321",
        "province_code": "330000",
        "city_code": "330100",
        "district_code": "330122",
        "home_facility_id": str(world.org_id("CHC-A1")),
        "address": "西湖区文三路 88 号",
    }
    created = client.post("/api/v1/patients", headers=headers, json=body).json()
    client.get("/api/v1/patients", headers=headers, params={"name": "欧阳秀兰"})
    client.get(f"/api/v1/patients/{created['id']}", headers=headers)
    lines = [JsonFormatter().format(r) for r in caplog.records]
    text = "\n".join(lines)
    for secret in ("欧阳", "秀兰", "13987654321", "1958-02-03", "文三路"):
        assert secret not in text
    access = [json.loads(line) for line in lines if '"logger": "medloop.access"' in line]
    assert {(a["method"], a["route"], a["status"]) for a in access} >= {
        ("POST", "/api/v1/patients", 201),
        ("GET", "/api/v1/patients", 200),
        ("GET", "/api/v1/patients/{patient_id}", 200),
    }


def test_formatter_redacts_patient_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "reading stored", (), None)
    record.name_ = "ok"
    record.phone = "13900000000"
    record.value = 182
    doc = json.loads(JsonFormatter().format(record))
    assert doc["phone"] == "[redacted]" and doc["value"] == "[redacted]"
    assert doc["event"] == "reading stored" and doc["level"] == "info"
