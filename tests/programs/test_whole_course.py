"""The issue's 'done when': a synthetic patient found by screening is enrolled, followed, referred,
reviewed and shown on a worklist, and the KPIs add up — through the screening service, the
programme feeds and the HTTP API."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.programs import feeds, kpi, service
from medloop.screening.service import screen_patients
from tests.factories import World, add_patient, auth
from tests.programs.conftest import T0

SYSTEM = system_principal()


def test_found_by_screening_to_mdt_to_worklist_to_kpis(
    client: TestClient, engine: Engine, world: World
) -> None:
    with Session(engine, expire_on_commit=False) as s:
        patient = add_patient(s, world, "wang", "CHC-A1")
        population = pl.DataFrame(
            {
                "patient_id": [str(patient.id)],
                "smoking": ["current"],
                "pack_years": [40.0],
                "years_since_quit": [None],
                "passive_smoking_years": [0.0],
                "copd": [False],
                "occupational_exposure": [False],
                "family_history_lung_cancer": [False],
                "sbp": [158.0],
                "dbp": [96.0],
                "bp_treated": [False],
                "tc_mmol": [5.8],
                "hdl_mmol": [1.0],
                "waist_cm": [95.0],
                "diabetes": [False],
                "north": [False],
                "urban": [True],
                "family_history_ascvd": [False],
            },
            schema_overrides={"years_since_quit": pl.Float64},
        )
        run = screen_patients(
            s,
            SYSTEM,
            population,
            models=["lung_screening", "china_par", "blood_pressure"],
            screened_on=T0.date(),
        )
        assert run.stored == 3
        assert feeds.sync_screening(s) == 3
        service.process_pending(s)
        s.commit()
    headers = auth(client, "doc-a1")
    enrolments = client.get(
        "/api/v1/enrolments", headers=headers, params={"patient_id": str(patient.id)}
    ).json()
    by_programme = {e["programme"]: e for e in enrolments["items"]}
    assert set(by_programme) == {"lung_cancer", "hypertension"}  # eligible for LDCT; BP grade 1 found
    htn = by_programme["hypertension"]
    assert htn["risk_score"] is not None and htn["risk_score"] > 0  # China-PAR orders the worklist
    lung_id = by_programme["lung_cancer"]["id"]
    start = datetime.fromisoformat(by_programme["lung_cancer"]["enrolled_at"])  # when the results were stored

    def t(days: float) -> str:
        return (start + timedelta(days=days)).isoformat()

    # Followed: the LDCT (done at the hub after the referral up) shows a 4B nodule.
    referrals = client.get(
        "/api/v1/referrals", headers=headers, params={"patient_id": str(patient.id)}
    ).json()
    ldct = next(r for r in referrals["items"] if r["capability"] == "ldct")
    assert ldct["performer_id"] == str(world.org_id("HUB"))
    result = {
        "id": "ldct-wang",
        "patient_id": str(patient.id),
        "kind": "test_result",
        "effective_at": t(20),
        "facility_id": str(world.org_id("CHC-A1")),
        "payload": {
            "test": "ldct",
            "nodule_type": "solid",
            "nodule_status": "baseline",
            "nodule_long_mm": 18,
            "nodule_short_mm": 14,
            "suspicious_features": True,
        },
    }
    assert client.post("/api/v1/events", headers=headers, json={"events": [result]}).json()["stored"] == [
        "ldct-wang"
    ]
    lung = client.get(f"/api/v1/enrolments/{lung_id}", headers=headers).json()
    assert (lung["state"], lung["facts"]["lung_rads_category"]) == ("mdt_review", "4X")

    # Reviewed: the MDT at the hub, with participants from three facilities, recommends surgery.
    case = client.get("/api/v1/mdt-cases", headers=headers).json()["items"][0]
    assert case["host_id"] == str(world.org_id("HUB"))
    people = [
        {"facility_id": str(world.org_id(c)), "role": r}
        for c, r in (
            ("HUB", "thoracic_surgeon"),
            ("CNTY-A", "radiologist"),
            ("CHC-A1", "general_practitioner"),
        )
    ]
    client.post(
        f"/api/v1/mdt-cases/{case['id']}/schedule",
        headers=headers,
        json={"scheduled_at": t(25), "participants": people},
    )
    r = client.post(
        f"/api/v1/mdt-cases/{case['id']}/recommendation",
        headers=headers,
        json={"recommendation": "surgery", "at": t(25)},
    )
    assert r.status_code == 200
    assert client.get(f"/api/v1/enrolments/{lung_id}", headers=headers).json()["stage"] == "treatment"

    # Shown on a worklist: the hypertension confirming visit was due a month after screening, and
    # the PET/CT and diagnostic CT the 4X result called for are overdue too (ASCVD risk first).
    as_of = datetime.fromisoformat(htn["next_due_at"]) + timedelta(days=29)
    params = {"facility_id": str(world.org_id("CHC-A1")), "as_of": as_of.isoformat()}
    worklist = client.get("/api/v1/worklists/overdue", headers=headers, params=params).json()
    assert [i["enrolment_id"] for i in worklist["items"]] == [htn["id"], lung_id]
    assert worklist["items"][0]["days_overdue"] == 29

    # The KPIs add up: the patient is counted once per programme and the control classes sum.
    month = (start + timedelta(days=100)).date().replace(day=1)  # the cohort needs 3 months in the programme
    with Session(engine) as s:
        kpi.refresh(s, month)
        s.commit()
    params = {"period": f"{month:%Y-%m}", "level": "facility", "unit": "CHC-A1", "limit": 500}
    figures = client.get("/api/v1/kpis", headers=headers, params=params).json()
    values = {(i["programme"], i["indicator"]): i for i in figures["items"]}
    assert values[("lung_cancer", "enrolled")]["value"] == 1
    assert values[("hypertension", "enrolled")]["value"] == 1
    classes = ("bp_controlled", "bp_uncontrolled", "missed_visits", "lost_to_follow_up")
    cohort = values[("hypertension", "cohort")]["value"]
    assert cohort == 1 and sum(values[("hypertension", c)]["numerator"] for c in classes) == cohort
    assert values[("hypertension", "missed_visits")]["numerator"] == 1
    assert values[("screening", "screening_coverage")]["numerator"] >= 1
