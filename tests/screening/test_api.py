"""/api/v1/screening: list the models, score one person; 401 / 404 / 422 as problem documents."""

from __future__ import annotations

from fastapi.testclient import TestClient

from medloop.clinical.catalogue import MODELS
from tests.factories import auth

CDRS_MAN = {
    "sex": "M",
    "age": 52,
    "height_cm": 170,
    "weight_kg": 72.25,
    "waist_cm": 88,
    "sbp": 135,
    "family_history_diabetes": True,
}


def test_needs_a_token(client: TestClient) -> None:
    assert client.get("/api/v1/screening").status_code == 401
    response = client.post("/api/v1/screening/cdrs", json=CDRS_MAN)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_lists_models(client: TestClient) -> None:
    response = client.get("/api/v1/screening", headers=auth(client, "partner"))
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()}
    assert set(models) == set(MODELS)
    par = models["china_par"]
    assert (par["version"], par["confirmed"]) == (MODELS["china_par"].version, True)
    assert models["cdrs"]["confirmed"] is False
    age = next(i for i in par["inputs"] if i["name"] == "age")
    assert age["valid"] == {"min": 35, "max": 74} and age["plausible"] == {"min": 0, "max": 120}
    assert next(i for i in par["inputs"] if i["name"] == "sex")["values"] == ["M", "F"]


def test_scores_one_person(client: TestClient) -> None:
    response = client.post("/api/v1/screening/cdrs", json=CDRS_MAN, headers=auth(client, "doc-a1"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "cdrs",
        "model_version": MODELS["cdrs"].version,
        "score": 37.0,
        "category": "high",
        "flags": [],
        "reasons": [],
    }


def test_implausible_values_are_a_result(client: TestClient) -> None:
    response = client.post(
        "/api/v1/screening/cdrs", json={**CDRS_MAN, "age": 200}, headers=auth(client, "admin")
    )
    assert response.status_code == 200
    assert (response.json()["category"], response.json()["reasons"]) == ("error", ["implausible:age"])


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/api/v1/screening/framingham", json={}, headers=auth(client, "admin"))
    assert response.status_code == 404
    assert "unknown model 'framingham'" in response.json()["detail"]


def test_bad_body_is_422(client: TestClient) -> None:
    headers = auth(client, "admin")
    for body in ([1, 2], {"age": "old"}, {"agee": 50}, {"age": {"years": 50}}):
        response = client.post("/api/v1/screening/cdrs", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")
