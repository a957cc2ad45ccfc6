"""Bundle.total: counted up to `COUNT_LIMIT` matches by default (`_total=estimate`), left out
beyond (paging goes on with `next` links); `_total=accurate` and `_summary=count` always count,
`_total=none` never does. SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from medloop.fhir import handler
from tests.devices.conftest import Fleet
from tests.factories import auth
from tests.fhir.conftest import bp

FHIR = {"content-type": "application/fhir+json"}


def test_total_is_counted_up_to_the_limit(
    client: TestClient, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "COUNT_LIMIT", 2)
    admin = {**auth(client, "admin"), **FHIR}
    ids = []
    for i in range(3):
        created = client.post(
            "/fhir/Observation", content=orjson.dumps(bp("BP-1", 120 + i, 80, 40 + i)), headers=admin
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])

    def search(**params: str) -> dict[str, object]:
        response = client.get("/fhir/Observation", params={"_count": "1", **params}, headers=admin)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    def relations(bundle: dict[str, object]) -> set[str]:
        return {link["relation"] for link in bundle["link"]}  # type: ignore[attr-defined]

    default = search()
    assert "total" not in default and relations(default) == {"self", "first", "next"}
    assert search(_total="estimate").keys() == default.keys()
    accurate = search(_total="accurate")
    assert accurate["total"] == 3 and "last" in relations(accurate)
    assert "total" not in search(_total="none")
    assert search(_summary="count")["total"] == 3
    assert search(_id=",".join(ids[:2]))["total"] == 2  # within the limit: counted
    refused = client.get("/fhir/Observation", params={"_total": "maybe"}, headers=admin)
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
