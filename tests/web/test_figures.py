"""Figures and facility scope of the dashboards against the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.auth.principal import system_principal
from medloop.programs import kpi as kpi_values
from medloop.programs import service
from medloop.store.base import utcnow
from medloop.web import pages
from medloop.web.overview import overview_cache
from tests.web.conftest import Activity, login
from tests.web.test_pages import kpi


def _enrol_and_refresh(engine: Engine, activity: Activity) -> date:
    """alice and bob in hypertension for four months (the control cohort), then this month's KPIs."""
    month = utcnow().date().replace(day=1)
    with Session(engine) as s:
        for key in ("alice", "bob"):
            service.enrol(
                s,
                system_principal(),
                activity.world.patients[key].id,
                "hypertension",
                at=utcnow() - timedelta(days=120),
                diagnosed=True,
            )
        kpi_values.refresh(s, month)
        s.commit()
    overview_cache.clear()
    return month


def _facility_sum(session: Session, month: date, codes: set[str] | None, indicator: str, part: str) -> int:
    rows, _ = kpi_values.search(
        session, system_principal(), period=month, level="facility", indicator=indicator
    )
    return int(sum(getattr(r, part) or 0 for r in rows if codes is None or r.unit in codes))


def test_overview_figures_equal_the_kpi_table(
    web_client: TestClient, activity: Activity, session: Session, engine: Engine
) -> None:
    month = _enrol_and_refresh(engine, activity)
    login(web_client, "admin")
    html = web_client.get("/web/").text
    assert f'data-period="{month:%Y-%m}"' in html
    # The region page reads the region's own KPI rows; they equal its facilities' rows added up.
    for name, indicator in (("eligible", "screening_coverage"), ("screened", "screening_coverage")):
        part = "denominator" if name == "eligible" else "numerator"
        assert int(kpi(html, name)) == _facility_sum(session, month, None, indicator, part)
    assert kpi(html, "screened") == "3"
    assert kpi(html, "enrolled") == "2"
    controlled = _facility_sum(session, month, None, "bp_controlled", "numerator")
    assert kpi(html, "bp_control") == f"{controlled}/2"
    lost = _facility_sum(session, month, None, "lost_to_follow_up", "numerator")
    missed = _facility_sum(session, month, None, "missed_visits", "numerator")
    assert (kpi(html, "missed_visits"), kpi(html, "lost_to_follow_up")) == (str(missed), str(lost))
    assert kpi(html, "facilities") == "6" and 'data-kpi="open_alerts"' not in html  # live per facility
    # A clinician of one county sees the sum of their three facilities' rows.
    login(web_client, "doc-cnty-a")
    html = web_client.get("/web/").text
    scoped = {"CNTY-A", "CHC-A1", "CHC-A2"}
    assert int(kpi(html, "eligible")) == _facility_sum(
        session, month, scoped, "screening_coverage", "denominator"
    )
    assert int(kpi(html, "screened")) == _facility_sum(
        session, month, scoped, "screening_coverage", "numerator"
    )


def test_overview_without_kpis_says_so(web_client: TestClient) -> None:
    login(web_client, "admin")
    html = web_client.get("/web/").text
    assert "medloop kpi refresh" in html
    assert kpi(web_client.get("/web/?facility=CHC-A1").text, "open_alerts") == "1"  # live


def test_overview_is_facility_scoped_and_drills_down(web_client: TestClient) -> None:
    login(web_client, "doc-cnty-a")  # scope: CNTY-A, CHC-A1, CHC-A2
    html = web_client.get("/web/").text
    assert set(re.findall(r'data-facility="([^"]+)"', html)) == {"CNTY-A", "CHC-A1", "CHC-A2"}
    assert kpi(html, "facilities") == "3"
    facility = web_client.get("/web/?facility=CHC-A1").text
    assert kpi(facility, "facilities") == "1" and kpi(facility, "open_alerts") == "1"
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


def test_overview_pages_its_facilities_table(web_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "FACILITY_ROWS", 4)
    login(web_client, "admin")
    first = web_client.get("/web/").text
    assert len(re.findall(r'<tr data-facility="', first)) == 4 and 'rel="next"' in first
    second = web_client.get("/web/?page=2").text
    assert len(re.findall(r'<tr data-facility="', second)) == 2 and 'rel="prev"' in second
    assert kpi(second, "facilities") == "6"  # the figures are the whole page's, not the table page's
