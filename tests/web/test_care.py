"""Worklist and MDT board pages on the programmes engine (TestClient, SQLite)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.web.conftest import Activity, enrol_long_overdue, login

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@pytest.fixture
def enrolled(engine: Engine, activity: Activity) -> Activity:
    with Session(engine) as session:
        enrol_long_overdue(session, activity)
        session.commit()
    return activity


def count(html: str) -> int:
    found = re.search(r'id="worklist-count" data-value="(\d+)"', html)
    assert found
    return int(found.group(1))


def test_worklist_call_outcome_and_visit(web_client: TestClient, enrolled: Activity) -> None:
    csrf = login(web_client, "doc-cnty-a")
    page = web_client.get("/web/worklist").text
    assert count(page) == 2 and "Alice" in page
    first = re.findall(r'data-enrolment="([^"]+)"', page)
    headers = {"Accept": "application/json"}
    call = f"/web/worklist/{first[0]}/call"
    assert web_client.post(call, data={"outcome": "not_reached"}, headers=headers).status_code == 403
    bad = web_client.post(call, data={"outcome": "maybe"}, headers={**headers, "X-CSRF-Token": csrf})
    assert bad.status_code == 400
    done = web_client.post(
        call, data={"outcome": "reached_rescheduled"}, headers={**headers, "X-CSRF-Token": csrf}
    )
    assert done.status_code == 200 and done.json()["remove"] is True
    assert count(web_client.get("/web/worklist").text) == 1
    visit = f"/web/worklist/{first[1]}/visit"
    implausible = web_client.post(
        visit, data={"sbp": 900, "dbp": 80}, headers={**headers, "X-CSRF-Token": csrf}
    )
    assert implausible.status_code == 400
    ok = web_client.post(visit, data={"sbp": 132, "dbp": 82}, headers={**headers, "X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert count(web_client.get("/web/worklist").text) == 0


def test_worklist_scope_and_roles(web_client: TestClient, enrolled: Activity) -> None:
    login(web_client, "doc-b1")  # CHC-B1: neither alice nor bob
    assert count(web_client.get("/web/worklist").text) == 0
    login(web_client, "screener-hub")
    assert web_client.get("/web/worklist").status_code == 403
    assert web_client.get("/web/mdt").status_code == 403
    login(web_client, "pm-b")
    assert web_client.get("/web/mdt").status_code == 200


def test_timeline_shows_the_programme_course(web_client: TestClient, enrolled: Activity) -> None:
    login(web_client, "doc-a1")
    page = web_client.get(f"/web/patients/{enrolled.world.patients['alice'].id}").text
    assert 'id="programme-course"' in page and "hypertension" in page
