"""Figures and facility scope of the dashboards against the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.people.models import Patient
from tests.web.conftest import Activity, login
from tests.web.test_pages import kpi


def test_overview_figures_equal_the_database(
    web_client: TestClient, activity: Activity, session: Session
) -> None:
    login(web_client, "admin")
    html = web_client.get("/web/").text
    assert int(kpi(html, "residents")) == session.scalar(select(func.count()).select_from(Patient))
    assert kpi(html, "screened") == "3"
    assert kpi(html, "open_alerts") == "1"
    assert kpi(html, "devices") == "2"
    # alice's latest BP is 186/112 (not controlled), bob's 126/78 (controlled)
    assert kpi(html, "bp_control") == "1/2"
    assert kpi(html, "facilities") == "6"


def test_overview_is_facility_scoped_and_drills_down(web_client: TestClient) -> None:
    login(web_client, "doc-cnty-a")  # scope: CNTY-A, CHC-A1, CHC-A2
    html = web_client.get("/web/").text
    assert set(re.findall(r'data-facility="([^"]+)"', html)) == {"CNTY-A", "CHC-A1", "CHC-A2"}
    assert kpi(html, "residents") == "2"
    facility = web_client.get("/web/?facility=CHC-A1").text
    assert kpi(facility, "residents") == "1" and kpi(facility, "open_alerts") == "1"
    assert "/web/patients/" in facility  # the open alert links to alice's timeline
    assert web_client.get("/web/?facility=CHC-B1").status_code == 404
    district = web_client.get("/web/?district=330122").text
    assert kpi(district, "facilities") == "3"


def test_timeline_in_scope_is_audited_and_out_of_scope_is_404(
    web_client: TestClient, activity: Activity, session: Session
) -> None:
    login(web_client, "doc-a1")
    alice, carol = activity.world.patients["alice"], activity.world.patients["carol"]
    page = web_client.get(f"/web/patients/{alice.id}")
    assert page.status_code == 200
    assert "BP-ALICE" in page.text and "bp-critical-systolic" in page.text and "china_par" in page.text
    assert "6 readings" in page.text
    audited = session.scalars(
        select(AuditEvent.resource_type).where(
            AuditEvent.patient_id == alice.id, AuditEvent.actor == "doc-a1"
        )
    ).all()
    assert {"Patient", "Observation"} <= set(audited)
    other = web_client.get(f"/web/patients/{carol.id}")
    assert other.status_code == 404 and "text/html" in other.headers["content-type"]
    assert carol.name not in other.text


def test_fleet_figures(web_client: TestClient) -> None:
    login(web_client, "pm-b")  # programme managers see every dead letter, devices of their scope
    html = web_client.get("/web/devices").text
    assert kpi(html, "dead_letters") == "4"
    assert kpi(html, "devices") == "0"  # no device is bound to a patient under CNTY-B
    login(web_client, "doc-a1")
    html = web_client.get("/web/devices").text
    assert kpi(html, "devices") == "1" and kpi(html, "online") == "1"
    assert kpi(html, "dead_letters") == "3"  # only those of BP-ALICE
    assert re.search(r'data-reason="unknown_unit">.*?data-value="2"', html, re.S)
    data = web_client.get("/web/devices.json").json()
    assert data["total"] == 1 and sum(data["per_minute"]["readings"]) == 2
