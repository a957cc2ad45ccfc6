"""HTTP: `POST /api/v1/readings`, the device registry, alerts and dead letters (`router`). The FHIR
entry points (`POST /fhir/Observation`, `POST /fhir`) are served by `medloop.fhir.api`, through the
same pipeline and this module's `submitter`.

Readings may be sent with a person's token (clinician, screener, admin: only for patients in their
facility scope), a device service user's token (only for the devices linked to that user), or a
device token issued by `POST /api/v1/devices/{serial}/credentials` (only for that device).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.deps import CurrentPrincipal, DbSession, bearer_token, current_principal
from medloop.auth.models import Role
from medloop.devices import deadletter, payloads, service
from medloop.devices.ingest import IngestResult, Submitter, ingest_entries
from medloop.devices.models import Device
from medloop.devices.pipeline import gc_paused
from medloop.devices.schemas import (
    AlertOut,
    BindIn,
    BindingOut,
    CredentialIn,
    CredentialOut,
    CredentialStatusOut,
    DeadLetterOut,
    DeviceIn,
    DeviceOut,
    ReplayIn,
    ReplayOut,
    UnbindIn,
)
from medloop.devices.types import Item, Outcome, Rejected
from medloop.errors import BadRequest, PayloadTooLarge, Unprocessable
from medloop.pagination import Page, PageParams, page_params

MAX_BATCH = 10_000
PROBLEM_JSON = "application/problem+json"

router = APIRouter(prefix="/api/v1", tags=["devices"])


async def raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("request body is empty; send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def submitter(request: Request, session: DbSession) -> Submitter:
    """Who is sending readings, and for which devices or patients they may."""
    token = bearer_token(request)
    source = request.client.host if request.client else None
    if token.startswith(service.TOKEN_PREFIX + "."):
        device = service.authenticate_device_token(session, token)
        return Submitter(
            service.device_principal(device, source), serial=device.serial, device_ids=frozenset({device.id})
        )
    principal = current_principal(request, session)
    principal.require_role(Role.DEVICE, Role.CLINICIAN, Role.SCREENER)
    if principal.has_role(Role.DEVICE) and not principal.unrestricted:
        devices = session.execute(
            select(Device.id, Device.serial).where(Device.service_user_id == principal.user_id)
        )
        owned = {serial: device_id for device_id, serial in devices}
        only = next(iter(owned)) if len(owned) == 1 else None
        return Submitter(principal, serial=only, device_ids=frozenset(owned.values()))
    return Submitter(principal, check_scope=True)


SubmitterDep = Annotated[Submitter, Depends(submitter)]


def _parse(doc: Any, who: Submitter) -> list[Item | Rejected]:
    try:
        entries = payloads.parse(doc, who.serial)
    except payloads.PayloadError as exc:
        raise Unprocessable(str(exc)) from None
    if len(entries) > MAX_BATCH:
        raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH} readings; this one has {len(entries)}")
    return entries


def _ingest(
    session: DbSession, entries: list[Item | Rejected], who: Submitter, channel: str, dead_letter: bool = True
) -> IngestResult:
    return ingest_entries(session, entries, channel=channel, submitter=who, dead_letter=dead_letter)


@router.post("/readings", responses={200: {"description": "Per-reading outcomes"}, 413: {}, 422: {}})
def post_readings(session: DbSession, who: SubmitterDep, raw: RawBody) -> Response:
    """A batch of readings (compact JSON, Open mHealth data points, FHIR Observations or a Bundle),
    up to 10,000. Good readings are stored, bad ones reported per item and dead-lettered. 200 if
    anything was accepted (stored or already stored), else 422 with the same per-item report."""
    with gc_paused():  # from decoding the body to encoding the response (see gc_paused)
        return _post_readings(session, who, raw)


def _post_readings(session: Session, who: Submitter, raw: bytes) -> Response:
    result = _ingest(session, _parse(decode_json(raw), who), who, "http")
    body = {**result.summary(), "items": [r.as_dict() for r in result.items]}
    if result.count(Outcome.REJECTED) == len(result.items):
        problem = {
            "type": "about:blank",
            "title": "Unprocessable content",
            "status": 422,
            "detail": "no reading in the submission was accepted",
            **body,
        }
        return Response(orjson.dumps(problem), status_code=422, media_type=PROBLEM_JSON)
    return Response(orjson.dumps(body), media_type="application/json")


# --- registry ---------------------------------------------------------------------------------


@router.post("/devices", response_model=DeviceOut, status_code=status.HTTP_201_CREATED)
def register_device(data: DeviceIn, session: DbSession, principal: CurrentPrincipal) -> DeviceOut:
    principal.require_role(Role.PROGRAMME_MANAGER)
    device = service.register_device(
        session,
        data.serial,
        data.kind.value,
        model=data.model,
        manufacturer_code=data.manufacturer_code,
        firmware=data.firmware,
        service_username=data.service_username,
    )
    return DeviceOut.model_validate(device)


@router.post("/devices/{serial}/bindings", response_model=BindingOut, status_code=status.HTTP_201_CREATED)
def bind_device(serial: str, data: BindIn, session: DbSession, principal: CurrentPrincipal) -> BindingOut:
    principal.require_role(Role.CLINICIAN, Role.SCREENER)
    return BindingOut.model_validate(service.bind(session, principal, serial, data.patient_id, data.start_at))


@router.post("/devices/{serial}/unbind", response_model=BindingOut)
def unbind_device(serial: str, data: UnbindIn, session: DbSession, principal: CurrentPrincipal) -> BindingOut:
    principal.require_role(Role.CLINICIAN, Role.SCREENER)
    return BindingOut.model_validate(service.unbind(session, principal, serial, data.end_at))


@router.post(
    "/devices/{serial}/credentials", response_model=CredentialOut, status_code=status.HTTP_201_CREATED
)
def issue_credential(
    serial: str, data: CredentialIn, session: DbSession, principal: CurrentPrincipal
) -> CredentialOut:
    principal.require_role(Role.PROGRAMME_MANAGER)
    issued = service.issue_credential(session, principal, serial, data.kind.value)
    return CredentialOut(
        id=issued.credential.id, kind=issued.credential.kind, username=issued.username, secret=issued.secret
    )


@router.post("/devices/credentials/{credential_id}/revoke", response_model=CredentialStatusOut)
def revoke_credential(
    credential_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> CredentialStatusOut:
    principal.require_role(Role.PROGRAMME_MANAGER)
    return CredentialStatusOut.model_validate(service.revoke_credential(session, principal, credential_id))


@router.get("/devices/alerts", response_model=Page[AlertOut])
def list_alerts(
    session: DbSession,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    status: str | None = "open",
) -> Page[AlertOut]:
    """Alerts for patients in the caller's facility scope, newest first."""
    principal.require_role(Role.CLINICIAN, Role.PROGRAMME_MANAGER)
    stmt = service.alerts_query(principal, status)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(page.limit).offset(page.offset)).all()
    if rows:
        record_access(session, principal, "search", "DeviceAlert", [r.patient_id for r in rows])
    return Page.of([AlertOut.model_validate(r) for r in rows], total, page)


@router.post("/devices/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge_alert(alert_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> AlertOut:
    principal.require_role(Role.CLINICIAN)
    return AlertOut.model_validate(service.acknowledge_alert(session, principal, alert_id))


@router.get("/devices/dead-letters", response_model=list[DeadLetterOut])
def list_dead_letters(
    session: DbSession,
    principal: CurrentPrincipal,
    status: str | None = "open",
    reason: str | None = None,
    serial: str | None = None,
    limit: int = 100,
) -> list[DeadLetterOut]:
    """Rejected readings with their reason and raw payload (admins only: payloads hold patient data)."""
    principal.require_role(Role.ADMIN)
    rows = deadletter.list_dead_letters(
        session, status=status, reason=reason, serial=serial, limit=max(1, min(limit, 1000))
    )
    record_access(session, principal, "search", "DeadLetter", [], detail={"rows": len(rows)})
    return [DeadLetterOut.model_validate(r) for r in rows]


@router.post("/devices/dead-letters/replay", response_model=ReplayOut)
def replay_dead_letters(data: ReplayIn, session: DbSession, principal: CurrentPrincipal) -> ReplayOut:
    principal.require_role(Role.ADMIN)
    report = deadletter.replay(session, principal, data.ids)
    return ReplayOut(replayed=report.replayed, still_failing=report.still_failing)
