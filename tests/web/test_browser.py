"""The dashboards in a real browser (Debian's Chromium through Playwright) against the app served
by uvicorn on a free local port: log in, open each page, compare figures with the database,
record a call outcome and watch the worklist shrink, switch language, and check that a clinician
cannot open another facility's patient. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from medloop.app import create_app
from medloop.auth.principal import system_principal
from medloop.programs import kpi
from medloop.settings import Settings
from medloop.store.base import utcnow
from tests.conftest import require_service
from tests.factories import PASSWORD
from tests.web.conftest import Activity, enrol_long_overdue

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

TIMEOUT_MS = 120_000  # generous: CI machines are small and shared

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("engine", ["sqlite"], indirect=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(engine: Engine, activity: Activity) -> Iterator[str]:
    with Session(engine) as session:
        enrol_long_overdue(session, activity)
        kpi.refresh(session, utcnow().date().replace(day=1))  # the overview's figures
        session.commit()
    port = _free_port()
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), log_level="WARNING")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        require_service("Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield instance
        instance.close()


def _login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/web/")
    assert "/web/login" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/web/")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboards_in_chromium(server: str, browser: Any, activity: Activity, engine: Engine) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)

    _login(page, server, "doc-cnty-a")
    cookie = next(c for c in context.cookies() if c["name"] == "medloop_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Region overview: figures equal the KPI table's; Plotly draws the charts.
    with Session(engine) as session:
        rows, _ = kpi.search(
            session,
            system_principal(),
            period=utcnow().date().replace(day=1),
            level="facility",
            indicator="screening_coverage",
        )
        eligible = sum(int(r.denominator or 0) for r in rows if r.unit in ("CNTY-A", "CHC-A1", "CHC-A2"))
    assert page.locator('[data-kpi="eligible"]').get_attribute("data-value") == str(eligible)
    assert page.locator('[data-kpi="enrolled"]').get_attribute("data-value") == "2"
    page.wait_for_selector("#chart-map .main-svg")
    page.wait_for_selector("#chart-trends .main-svg")
    assert page.locator("#facilities tbody tr").count() == 3
    page.locator("#facilities thead th").nth(4).get_by_role("button").press("Enter")  # keyboard sort
    assert page.locator("#facilities thead th").nth(4).get_attribute("aria-sort") == "ascending"
    _shot(page, "overview")

    # Drill down to the facility and open the patient with the alert: BP chart with markers.
    page.get_by_role("link", name="CHC-A1").first.click()
    page.wait_for_selector("#open-alerts")
    assert page.locator('[data-kpi="open_alerts"]').get_attribute("data-value") == "1"  # live
    page.locator("#open-alerts a").first.click()
    page.wait_for_selector("#chart-bp .main-svg")
    assert "BP-ALICE" in page.content()
    assert page.locator("#programme-course").is_visible()
    _shot(page, "patient")

    # Worklist: record a call outcome; the row leaves and the count drops.
    page.goto(f"{server}/web/worklist")
    count = int(page.locator("#worklist-count").inner_text())
    assert count == 2
    row = page.locator("#worklist tbody tr").first
    row.get_by_label("Outcome of the call").select_option("reached_rescheduled")
    row.get_by_role("button", name="Save call").click()
    expect(page.locator("#worklist-count")).to_have_text("1")  # (CSP forbids wait_for_function's eval)
    assert page.locator("#worklist tbody tr").count() == 1
    page.reload()
    assert page.locator("#worklist-count").inner_text() == "1"
    _shot(page, "worklist")

    # Device fleet and MDT board open; the fleet figures equal the database's.
    page.goto(f"{server}/web/devices")
    assert page.locator('[data-kpi="devices"]').get_attribute("data-value") == "2"
    page.wait_for_selector("#chart-rate .main-svg")
    _shot(page, "devices")
    page.goto(f"{server}/web/mdt")
    assert page.get_by_role("heading", name="MDT board").is_visible()

    # Language: switch to 简体中文, and it sticks.
    page.goto(f"{server}/web/")
    page.get_by_role("link", name="简体中文").click()
    page.wait_for_selector("html[lang='zh-Hans']")
    assert page.get_by_role("heading", name="区域总览").is_visible()
    page.goto(f"{server}/web/devices")
    assert page.get_by_role("heading", name="设备管理").is_visible()
    _shot(page, "devices-zh")

    # No page so far logged a console error (checked before the deliberate 404 below).
    assert not errors, errors

    # Scope: a patient of another facility is not found, and nothing of them shows.
    carol = activity.world.patients["carol"]
    response = page.goto(f"{server}/web/patients/{carol.id}")
    assert response is not None and response.status == 404
    assert carol.name not in page.content()
    context.close()


def test_screening_campaign_in_chromium(
    server: str, browser: Any, activity: Activity, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    _login(page, server, "screener-hub")
    page.goto(f"{server}/web/screening")
    population = tmp_path / "population.csv"
    population.write_text("person_id,sbp,dbp\nA,150,95\nB,118,72\nC,182,112\n", encoding="utf-8")
    page.get_by_label("Population file").set_input_files(str(population))
    page.get_by_role("button", name="Start screening").click()
    page.wait_for_selector("#summary")  # the page polls progress and reloads when done
    grade_3 = page.locator('tr[data-model="blood_pressure"][data-category="grade_3"] td[data-value]')
    assert grade_3.get_attribute("data-value") == "1"
    page.wait_for_selector("#chart-summary .main-svg")
    _shot(page, "screening")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the referral list (CSV)").click()
    assert download.value.suggested_filename.endswith(".csv")
    page.close()
