"""The dashboards without a browser: login and logout, status codes per role, facility scope,
CSRF, language, figures against the database, and the screening campaign job."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from tests.web.conftest import CSRF, Activity, login

# Figures and scope run on both backends (test_figures.py); the rest of the pages on SQLite.
pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def kpi(html: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}" data-value="([^"]*)"', html)
    assert found, f"no KPI {name}"
    return found.group(1)


def test_pages_need_a_login(web_client: TestClient) -> None:
    for path in (
        "/web/",
        "/web/devices",
        "/web/screening",
        "/web/patients/00000000-0000-0000-0000-000000000001",
    ):
        response = web_client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/web/login?next=/web/")
    assert web_client.get("/", follow_redirects=False).headers["location"] == "/web/"


def test_login_sets_a_strict_httponly_cookie_and_logout_revokes_it(web_client: TestClient) -> None:
    login(web_client, "doc-a1")
    form = web_client.get("/web/login")
    token = CSRF.search(form.text)
    assert token
    response = web_client.post(
        "/web/login",
        data={"username": "doc-a1", "password": "correct-horse-battery", "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"]
    assert (
        "medloop_session=" in cookie
        and "HttpOnly" in cookie
        and "SameSite=strict" in cookie.replace("Strict", "strict")
    )
    session_cookie = web_client.cookies.get("medloop_session")
    csrf = CSRF.search(web_client.get("/web/").text)
    assert csrf
    assert web_client.post("/web/logout", follow_redirects=False).status_code == 403  # no CSRF token
    out = web_client.post("/web/logout", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
    assert out.status_code == 303
    web_client.cookies.set("medloop_session", session_cookie or "")  # replay the revoked cookie
    assert web_client.get("/web/", follow_redirects=False).status_code == 303


def test_login_refuses_wrong_passwords_missing_csrf_and_service_accounts(web_client: TestClient) -> None:
    form = web_client.get("/web/login")
    token = CSRF.search(form.text)
    assert token
    wrong = web_client.post(
        "/web/login", data={"username": "doc-a1", "password": "nope-nope", "csrf_token": token.group(1)}
    )
    assert wrong.status_code == 401 and 'role="alert"' in wrong.text
    forged = web_client.post("/web/login", data={"username": "doc-a1", "password": "correct-horse-battery"})
    assert forged.status_code == 403
    service = web_client.post(
        "/web/login",
        data={"username": "device-1", "password": "correct-horse-battery", "csrf_token": token.group(1)},
    )
    assert service.status_code == 401
    redirect = web_client.post(
        "/web/login",
        data={
            "username": "doc-a1",
            "password": "correct-horse-battery",
            "csrf_token": token.group(1),
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert redirect.headers["location"] == "/web/"


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        ("admin", "/web/", 200),
        ("pm-b", "/web/", 200),
        ("doc-a1", "/web/", 200),
        ("screener-hub", "/web/", 200),
        ("partner", "/web/", 403),
        ("doc-a1", "/web/devices", 200),
        ("screener-hub", "/web/devices", 403),
        ("screener-hub", "/web/screening", 200),
        ("doc-a1", "/web/screening", 403),
        ("pm-b", "/web/devices.json", 200),
    ],
)
def test_status_per_role(web_client: TestClient, user: str, path: str, status: int) -> None:
    login(web_client, user)
    response = web_client.get(path)
    assert response.status_code == status
    if path.endswith(".json"):
        return
    assert "text/html" in response.headers["content-type"]
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_language_switch_sticks(web_client: TestClient) -> None:
    login(web_client, "doc-a1")
    zh = web_client.get("/web/?lang=zh")
    assert '<html lang="zh-Hans">' in zh.text and "区域总览" in zh.text
    assert web_client.cookies.get("medloop_lang") == "zh"
    assert "区域总览" in web_client.get("/web/").text
    assert "Region overview" in web_client.get("/web/?lang=en").text


def test_static_assets(web_client: TestClient) -> None:
    plotly = web_client.get("/web/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000
    assert web_client.get("/web/static/app.css").status_code == 200
    assert web_client.get("/web/static/..%2Fpages.py").status_code == 404


def _wait_done(client: TestClient, campaign_id: str) -> dict[str, object]:
    for _ in range(200):
        state = client.get(f"/web/screening/{campaign_id}/progress").json()
        if state["status"] not in ("queued", "running"):
            return dict(state)
        time.sleep(0.05)
    raise AssertionError("the campaign did not finish")


def test_screening_campaign_runs_in_the_background(
    web_client: TestClient, activity: Activity, session: Session
) -> None:
    csrf = login(web_client, "screener-hub")
    ids = [activity.world.patients[k].id for k in ("alice", "bob", "carol", "dan")]
    csv = "patient_id,sbp,dbp\n" + "".join(
        f"{pid},{s},{d}\n" for pid, s, d in zip(ids, (165, 118, 145, 131), (95, 70, 85, 82), strict=True)
    )
    refused = web_client.post("/web/screening", files={"population": ("pop.csv", csv.encode(), "text/csv")})
    assert refused.status_code == 403  # no CSRF token
    started = web_client.post(
        "/web/screening",
        data={"csrf_token": csrf, "store": "true"},
        files={"population": ("pop.csv", csv.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert started.status_code == 303
    campaign_id = started.headers["location"].split("=")[-1]
    state = _wait_done(web_client, campaign_id)
    assert state["status"] == "done", state
    assert state["processed"] == 4 and state["stored"] == 4
    counts = {(r["model"], r["category"]): r["count"] for r in state["summary"]}  # type: ignore[attr-defined]
    assert counts[("blood_pressure", "grade_2")] == 1 and counts[("blood_pressure", "normal")] == 1
    page = web_client.get(f"/web/screening?campaign={campaign_id}").text
    assert 'data-model="blood_pressure" data-category="grade_2"' in page
    stored = session.scalar(
        select(func.count()).select_from(
            select(AuditEvent.id).where(AuditEvent.resource_type == "RiskAssessment").subquery()
        )
    )
    assert stored and stored >= 4
    download = web_client.get(f"/web/screening/{campaign_id}/referrals.csv")
    assert download.status_code == 200 and download.text.startswith("patient_id,")
    login(web_client, "pm-b")  # another user cannot see the campaign
    assert web_client.get(f"/web/screening/{campaign_id}/progress").status_code == 404


def test_screening_campaign_reports_bad_files(web_client: TestClient) -> None:
    csrf = login(web_client, "screener-hub")
    bad = web_client.post(
        "/web/screening",
        data={"csrf_token": csrf},
        files={"population": ("pop.txt", b"x", "text/plain")},
    )
    assert bad.status_code == 400 and "csv" in bad.text
    started = web_client.post(
        "/web/screening",
        data={"csrf_token": csrf},
        files={"population": ("pop.csv", b"person_id,colour\n1,blue\n", "text/csv")},
        follow_redirects=False,
    )
    state = _wait_done(web_client, started.headers["location"].split("=")[-1])
    assert state["status"] == "failed" and "no model can run" in str(state["error"])
