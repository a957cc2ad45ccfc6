"""The dashboard pages (`/web/…`) and their small JSON endpoints. Thin, like the API routers:
authorise, call a figures module or a domain service, render a template."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from medloop.auth.audit import record_access
from medloop.auth.deps import DbSession
from medloop.auth.models import Role
from medloop.auth.scope import for_reads
from medloop.errors import NotFound, Problem
from medloop.web import care, lang, static
from medloop.web.campaigns import CampaignRunner
from medloop.web.fleet import build_fleet
from medloop.web.overview import build_overview, open_alerts, overview_cache
from medloop.web.render import PageRoute, render
from medloop.web.session import (
    LOGIN_CSRF_COOKIE,
    CheckedWeb,
    CurrentWeb,
    check_login_csrf,
    end_session,
    log_in,
    login_csrf,
    set_cookie,
    start_session,
)
from medloop.web.timeline import build_timeline

router = APIRouter(prefix="/web", route_class=PageRoute, include_in_schema=False)
root_router = APIRouter(include_in_schema=False)
router.include_router(care.router)

OVERVIEW_ROLES = (Role.PROGRAMME_MANAGER, Role.CLINICIAN, Role.SCREENER)
PATIENT_READERS = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
SCREENING_ROLES = (Role.SCREENER, Role.PROGRAMME_MANAGER)
FLEET_ROLES = (Role.PROGRAMME_MANAGER, Role.CLINICIAN)
FACILITY_ROWS = 100  # per page of the overview's facilities table (the map shows them all)


@root_router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/web/", status_code=303)


def translator(request: Request) -> lang.Translator:
    return lang.Translator(lang.chosen(request))


def labels(t: lang.Translator, *keys: str) -> dict[str, str]:
    """Chart labels in the page's language."""
    return {k: t(f"chart.{k}") for k in keys}


def _safe_next(target: str | None) -> str:
    """Only paths on this site after login (no open redirect)."""
    if target and target.startswith("/web") and not target.startswith("//") and "\\" not in target:
        return target
    return "/web/"


# --- login and logout --------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    token = login_csrf(request)
    response = render(request, "login.html", {"login_csrf": token, "next": _safe_next(next)})
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.post("/login")
def login(
    request: Request,
    session: DbSession,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    check_login_csrf(request, csrf_token)
    settings = request.app.state.settings
    try:
        _user, token = log_in(session, settings, username.strip(), password)
    except Problem:
        return render(
            request,
            "login.html",
            {
                "login_csrf": request.cookies.get(LOGIN_CSRF_COOKIE, ""),
                "next": _safe_next(next),
                "error": "login.failed",
                "username": username,
            },
            status_code=401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    start_session(request, response, token, settings)
    return response


@router.post("/logout")
def logout(request: Request, session: DbSession, web: CheckedWeb) -> Response:
    response = RedirectResponse("/web/login", status_code=303)
    end_session(session, request.app.state.settings, request, response)
    return response


# --- region overview ---------------------------------------------------------------------------


@router.get("/")
def overview(
    request: Request,
    session: DbSession,
    web: CurrentWeb,
    district: str | None = Query(None, max_length=12),
    facility: str | None = Query(None, max_length=40),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    web.principal.require_role(*OVERVIEW_ROLES)
    scope_key = None if web.principal.scope is None else frozenset(web.principal.scope)
    data = overview_cache.get(
        ("overview", scope_key, district, facility),
        lambda: build_overview(session, web.principal, district=district, facility_code=facility),
    )
    if facility and data.facility is None:
        raise NotFound("no such facility in your scope")
    t = translator(request)
    alerts = []
    if data.facility is not None and web.principal.has_role(*PATIENT_READERS):
        alerts = open_alerts(session, for_reads(session, web.principal), data.facility.id)
    chart = {
        "kind": "overview",
        "facilities": [f.as_json() for f in data.facilities],
        "trends": data.trends,
        "labels": labels(
            t,
            "eligible",
            "coverage",
            "bp_control",
            "missed_visits",
            "lost_to_follow_up",
            "count",
            "lat",
            "lon",
        ),
    }
    first = (page - 1) * FACILITY_ROWS
    rows = data.facilities[first : first + FACILITY_ROWS]
    pages = {
        "first": first + 1,
        "last": first + len(rows),
        "total": len(data.facilities),
        "previous": _page_link(request, page - 1) if page > 1 else None,
        "next": _page_link(request, page + 1) if first + FACILITY_ROWS < len(data.facilities) else None,
    }
    return render(
        request,
        "overview.html",
        {"o": data, "k": data.totals, "rows": rows, "pages": pages, "chart": chart, "alerts": alerts},
    )


def _page_link(request: Request, page: int) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "page"] + [("page", str(page))]
    return f"{request.url.path}?{urlencode(query)}"


# --- patient timeline --------------------------------------------------------------------------


@router.get("/patients/{patient_id}")
def patient_timeline(
    request: Request, session: DbSession, web: CurrentWeb, patient_id: uuid.UUID
) -> Response:
    web.principal.require_role(*PATIENT_READERS)
    principal = for_reads(session, web.principal)
    tl = build_timeline(session, principal, patient_id)
    t = translator(request)
    chart = {
        "kind": "patient",
        "bp": tl.bp,
        "glucose": tl.glucose,
        "lines": tl.chart_lines,
        "labels": labels(t, "systolic", "diastolic", "glucose", "alert", "target", "critical", "low"),
    }
    course = care.programme_course(session, principal, patient_id)
    return render(request, "patient.html", {"tl": tl, "chart": chart, "programme": course})


# --- device fleet ------------------------------------------------------------------------------


@router.get("/devices")
def devices(request: Request, session: DbSession, web: CurrentWeb) -> Response:
    web.principal.require_role(*FLEET_ROLES)
    fleet = build_fleet(session, web.principal)
    record_access(
        session, web.principal, "search", "Device", [], detail={"view": "fleet", "devices": fleet.total}
    )
    chart = {
        "kind": "fleet",
        "per_minute": fleet.per_minute,
        "labels": labels(translator(request), "readings"),
    }
    return render(request, "devices.html", {"fleet": fleet, "chart": chart})


@router.get("/devices.json")
def devices_json(session: DbSession, web: CurrentWeb) -> JSONResponse:
    web.principal.require_role(*FLEET_ROLES)
    fleet = build_fleet(session, web.principal)
    return JSONResponse(
        {
            "total": fleet.total,
            "online": fleet.online,
            "per_minute": fleet.per_minute,
            "dead_letters": dict(fleet.dead_letters),
        }
    )


# --- screening campaigns -----------------------------------------------------------------------


def campaigns(request: Request) -> CampaignRunner:
    runner: CampaignRunner | None = getattr(request.app.state, "web_campaigns", None)
    if runner is None:
        runner = CampaignRunner(request.app.state.sessions)
        request.app.state.web_campaigns = runner
    return runner


@router.get("/screening")
def screening(request: Request, web: CurrentWeb, campaign: str | None = None) -> Response:
    web.principal.require_role(*SCREENING_ROLES)
    runner = campaigns(request)
    current = runner.get(web.principal, campaign) if campaign else None
    return render(request, "screening.html", {"campaigns": runner.mine(web.principal), "current": current})


@router.post("/screening")
async def start_campaign(
    request: Request,
    web: CheckedWeb,
    population: UploadFile,
    store: Annotated[bool, Form()] = False,
) -> Response:
    web.principal.require_role(*SCREENING_ROLES)
    data = await population.read()
    campaign = campaigns(request).submit(
        web.principal, population.filename or "", data, store and web.principal.has_role(Role.SCREENER)
    )
    return RedirectResponse(f"/web/screening?campaign={campaign.id}", status_code=303)


@router.get("/screening/{campaign_id}/progress")
def campaign_progress(request: Request, web: CurrentWeb, campaign_id: str) -> JSONResponse:
    web.principal.require_role(*SCREENING_ROLES)
    return JSONResponse(campaigns(request).get(web.principal, campaign_id).as_json())


@router.get("/screening/{campaign_id}/referrals.csv")
def campaign_referrals(request: Request, session: DbSession, web: CurrentWeb, campaign_id: str) -> Response:
    web.principal.require_role(*SCREENING_ROLES)
    campaign = campaigns(request).get(web.principal, campaign_id)
    if campaign.status != "done" or not campaign.referral_file.exists():
        raise NotFound("the referral list is ready when the campaign is done")
    record_access(
        session,
        web.principal,
        "export",
        "ServiceRequest",
        [],
        resource_id=f"campaign:{campaign.id}",
        detail={"referrals": campaign.referrals},
    )
    return FileResponse(
        campaign.referral_file,
        media_type="text/csv; charset=utf-8",
        filename=f"referrals-{campaign.id}.csv",
        headers={"Cache-Control": "no-store"},
    )


# --- assets ------------------------------------------------------------------------------------


@router.get("/static/{name}")
def asset(name: str) -> Response:
    return static.response(name)
