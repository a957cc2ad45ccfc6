"""FHIR fixtures: the standard world with bound devices (tests/devices), realistic resources, and
a live server (uvicorn on a free 127.0.0.1 port in a background thread) for real FHIR clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from medloop.app import create_app
from medloop.settings import Settings
from medloop.store.base import utcnow
from tests.devices.conftest import Fleet, fleet  # noqa: F401  (the fixture, re-exported)
from tests.factories import PASSWORD

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITALS = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
    ]
}


def iso(minutes_ago: float) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).isoformat()


def bp(serial: str, sbp: float, dbp: float, minutes_ago: float, **extra: Any) -> dict[str, Any]:
    """A blood-pressure panel as the FHIR vital-signs profile shapes it."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITALS],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
        "effectiveDateTime": iso(minutes_ago),
        "device": {"identifier": {"value": serial}},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": sbp, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": dbp, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
        ],
        **extra,
    }


def spo2(serial: str, value: float, minutes_ago: float, code: str = "2708-6") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITALS],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": iso(minutes_ago),
        "device": {"identifier": {"value": serial}},
        "valueQuantity": {"value": value, "unit": "%", "system": UCUM, "code": "%"},
    }


def patient(family: str, given: str, facility_id: object, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1958-03-14",
        "telecom": [{"system": "phone", "value": "+86 138 0000 0000", "use": "mobile"}],
        "address": [{"use": "home", "text": "12 West Lake Road", "state": "330000", "city": "330100"}],
        "managingOrganization": {"reference": f"Organization/{facility_id}"},
        **extra,
    }


def condition(subject: str, code: str = "38341003", display: str = "Hypertensive disorder") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
        "subject": {"reference": subject},
        "onsetDateTime": "2019-06-01",
        "recordedDate": "2019-06-03",
    }


def entry(resource: dict[str, Any], full_url: str | None = None, method: str = "POST") -> dict[str, Any]:
    """A Bundle entry creating `resource`."""
    doc: dict[str, Any] = {
        "resource": resource,
        "request": {"method": method, "url": resource["resourceType"]},
    }
    if full_url:
        doc["fullUrl"] = full_url
    return doc


@dataclass
class Live:
    url: str  # the FHIR base, e.g. http://127.0.0.1:40123/fhir
    root: str

    def token(self, username: str, scope: str | None = None) -> str:
        data = {"grant_type": "password", "username": username, "password": PASSWORD}
        if scope:
            data["scope"] = scope
        response = httpx.post(f"{self.root}/api/v1/auth/token", data=data, timeout=60)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def live(engine: Engine, fleet: Fleet) -> Iterator[Live]:  # noqa: F811
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), log_level="WARNING")
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    root = f"http://127.0.0.1:{port}"
    yield Live(f"{root}/fhir", root)
    server.should_exit = True
    thread.join(timeout=10)
