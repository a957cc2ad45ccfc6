"""Rendering pages: the Jinja2 environment, the context every page gets (user, language, CSRF
token, navigation), security headers, and `PageRoute`, which turns errors on pages into HTML
(401 → the login form, 403/404/4xx → an error page) instead of the API's JSON problem bodies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from medloop.errors import Problem
from medloop.web import lang
from medloop.web.session import LoginRequired, WebSession

log = logging.getLogger("medloop.web")

TEMPLATES = Path(__file__).parent / "templates"
# Scripts only from this server (no inline script); Plotly sets inline styles on its SVG.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _json_script(value: Any) -> Markup:
    """Data for the page's scripts, safe inside <script type="application/json">."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):,.{digits}f}"


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def _local(value: datetime | None, tz: str = "Asia/Shanghai", fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "—" if value is None else value.astimezone(ZoneInfo(tz)).strftime(fmt)


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(json_script=_json_script, number=_number, percent=_percent, local=_local)

# Navigation: (endpoint path, catalogue key, roles that see it; admins see everything).
NAV = (
    ("/web/", "nav.overview", ("programme_manager", "clinician", "screener")),
    ("/web/worklist", "nav.worklist", ("clinician",)),
    ("/web/screening", "nav.screening", ("screener", "programme_manager")),
    ("/web/devices", "nav.devices", ("programme_manager", "clinician")),
    ("/web/mdt", "nav.mdt", ("clinician", "programme_manager")),
)


def page_context(request: Request, web: WebSession | None) -> dict[str, Any]:
    language = lang.chosen(request)
    nav = []
    if web is not None:
        nav = [
            {"href": href, "key": key, "current": request.url.path == href}
            for href, key, roles in NAV
            if web.principal.has_role("admin", *roles)
        ]
    return {
        "request": request,
        "t": lang.Translator(language),
        "lang": language,
        "html_lang": lang.HTML_LANG[language],
        "languages": lang.LANGUAGES,
        "web": web,
        "csrf": web.csrf if web else "",
        "nav": nav,
        "tz": request.app.state.settings.timezone,
        "path": request.url.path,
        "query": request.url.query,
    }


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    web: WebSession | None = None,
) -> HTMLResponse:
    web = web or getattr(request.state, "web_session", None)
    html = environment.get_template(template).render({**page_context(request, web), **(context or {})})
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    chosen_lang = request.query_params.get("lang")
    if chosen_lang in lang.LANGUAGES and request.cookies.get(lang.COOKIE) != chosen_lang:
        response.set_cookie(lang.COOKIE, chosen_lang, max_age=365 * 86400, path="/", samesite="strict")
    return response


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/web/login?next={quote(target, safe='/')}", status_code=303)
    return response


def _wants_html(request: Request) -> bool:
    return request.method in ("GET", "HEAD") or "text/html" in request.headers.get("accept", "")


def error_page(request: Request, exc: Problem) -> Response:
    if isinstance(exc, LoginRequired) and _wants_html(request):
        return login_redirect(request)
    if not _wants_html(request):  # fetch() calls from the pages get the problem body
        from medloop.app import error_response

        return error_response(request, exc.status, exc.detail, code=exc.code)
    return render(request, "error.html", {"status": exc.status, "detail": exc.detail}, status_code=exc.status)


class PageRoute(APIRoute):
    """Routes of the dashboards: problems become HTML pages (or a redirect to the login form)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Problem as exc:
                return error_page(request, exc)

        return page_handler
