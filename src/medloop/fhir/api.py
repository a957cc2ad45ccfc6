"""/fhir: the FHIR R4 REST API. Thin: parse the request, build the context, call
`medloop.fhir.service` / `bundle` / `bulk`, shape the response (`application/fhir+json`).
Errors raised as `Problem`s are rendered as OperationOutcomes by the application."""

from __future__ import annotations

import uuid
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse

from medloop.auth.audit import record_access
from medloop.auth.deps import DbSession, bearer_token, current_principal
from medloop.devices import service as device_service
from medloop.devices.api import submitter as device_submitter
from medloop.errors import BadRequest, NotFound, Problem
from medloop.fhir import bulk, bundle, service
from medloop.fhir.capability import capability_statement
from medloop.fhir.common import FHIR_JSON, FHIR_NDJSON, Ctx, Invalid, parse_uuid
from medloop.fhir.handler import Found, Written
from medloop.fhir.mapping.observation import ObservationRejected

router = APIRouter(prefix="/fhir", tags=["fhir"])


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def fhir_context(request: Request, session: DbSession) -> Ctx:
    base = base_url(request)
    if bearer_token(request).startswith(device_service.TOKEN_PREFIX + "."):
        who = device_submitter(request, session)  # a device's own token
        return Ctx(session, who.principal, base, submitter=lambda: who)
    principal = current_principal(request, session)
    return Ctx(session, principal, base, submitter=lambda: device_submitter(request, session))


FhirCtx = Annotated[Ctx, Depends(fhir_context)]


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(problem: Problem) -> Response:
    """An error answered without raising, so what the request must keep (a dead letter) is committed."""
    issue = {"severity": "error", "code": problem.code, "diagnostics": problem.detail}
    return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, problem.status)


async def json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        raise Invalid("the request body is empty; send a FHIR resource as JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise StructureError(f"the request body is not valid JSON: {exc}") from None


class StructureError(Problem):
    status, title, code = 400, "Bad request", "structure"


Body = Annotated[Any, Depends(json_body)]


def prefer(request: Request, key: str) -> str | None:
    for part in request.headers.get("prefer", "").split(";"):
        for item in part.split(","):
            name, _, value = item.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower()
    return None


def strict(request: Request) -> bool:
    return prefer(request, "handling") == "strict"


def _http_date(value: str | None) -> str | None:
    if not value:
        return None
    return format_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")), usegmt=True)


def resource_headers(ctx: Ctx, found: Found, location: bool = False) -> dict[str, str]:
    headers = {"ETag": f'W/"{found.version}"'}
    modified = _http_date(found.resource.get("meta", {}).get("lastUpdated"))
    if modified:
        headers["Last-Modified"] = modified
    if location:
        rtype = found.resource["resourceType"]
        # a path-absolute reference (RFC 9110 allows it), valid behind any proxy
        path = ctx.base.split("://", 1)[-1].partition("/")[2]
        headers["Location"] = f"/{path}/{rtype}/{found.id}/_history/{found.version}"
    return headers


def written_response(request: Request, ctx: Ctx, written: Written) -> Response:
    status = 201 if written.created else 200
    headers = resource_headers(ctx, written.found, location=True)
    wanted = prefer(request, "return")
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    if wanted == "operationoutcome":
        info = {"severity": "information", "code": "informational", "diagnostics": "done"}
        return fhir_response({"resourceType": "OperationOutcome", "issue": [info]}, status, headers)
    return fhir_response(written.found.resource, status, headers)


# --- capability, bundles ------------------------------------------------------------------------


@router.get("/metadata")
def metadata(request: Request) -> Response:
    """The CapabilityStatement (no token needed)."""
    return fhir_response(capability_statement(base_url(request)))


@router.post("")
def post_bundle(request: Request, ctx: FhirCtx, body: Body) -> Response:
    """A transaction (all or nothing) or batch Bundle."""
    outcome = bundle.process(ctx, body, strict=strict(request))
    return fhir_response(outcome.body, outcome.status)


# --- bulk data (registered before the generic routes) -------------------------------------------


def _kick_off_export(request: Request, ctx: Ctx, level: str, group_id: uuid.UUID | None = None) -> Response:
    params = dict(request.query_params)
    spec = bulk.export_spec(ctx.principal, level, params, group_id)
    if level == "group":
        bulk.patients_of(ctx, spec)  # 404 now, not in the background, if the group does not exist
    job = bulk.kick_off(ctx.session, ctx.principal, "export", level, str(request.url), params, group_id)
    ctx.session.commit()  # the worker reads the job from its own session
    sessions = request.app.state.sessions
    bulk.executor().submit(bulk.run_export, sessions, job.id, ctx.principal, spec, ctx.base)
    return Response(status_code=202, headers={"Content-Location": f"{ctx.base}/$bulk-status/{job.id}"})


@router.get("/$export")
def export_system(request: Request, ctx: FhirCtx) -> Response:
    return _kick_off_export(request, ctx, "system")


@router.get("/Patient/$export")
def export_patients(request: Request, ctx: FhirCtx) -> Response:
    return _kick_off_export(request, ctx, "patient")


@router.get("/Group/{group_id}/$export")
def export_group(group_id: str, request: Request, ctx: FhirCtx) -> Response:
    found = parse_uuid(group_id)
    if found is None:
        raise NotFound(f"Group/{group_id} not found")
    return _kick_off_export(request, ctx, "group", found)


def _job(ctx: Ctx, job_id: str) -> Any:
    found = parse_uuid(job_id)
    if found is None:
        raise NotFound("no such bulk job")
    return bulk.job_for(ctx.session, ctx.principal, found)


@router.get("/$bulk-status/{job_id}")
def bulk_status(job_id: str, ctx: FhirCtx) -> Response:
    job = _job(ctx, job_id)
    if job.status in ("accepted", "running"):
        return Response(
            status_code=202, headers={"X-Progress": job.progress or job.status, "Retry-After": "1"}
        )
    if job.status == "failed":
        issue = {"severity": "error", "code": "exception", "diagnostics": f"bulk job failed: {job.error}"}
        return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, 500)
    return Response(orjson.dumps(job.manifest), media_type="application/json")


@router.delete("/$bulk-status/{job_id}")
def bulk_cancel(job_id: str, ctx: FhirCtx) -> Response:
    bulk.cancel(ctx.session, _job(ctx, job_id))
    return Response(status_code=202)


@router.get("/$bulk-file/{job_id}/{name}")
def bulk_file(job_id: str, name: str, ctx: FhirCtx) -> FileResponse:
    job = _job(ctx, job_id)
    path = bulk.job_file(job, name)
    record_access(
        ctx.session, ctx.principal, "read", "Bulk", [], resource_id=str(job.id), detail={"file": name}
    )
    return FileResponse(path, media_type=FHIR_NDJSON, filename=name)


@router.post("/$import")
async def bulk_import(request: Request, ctx: FhirCtx) -> Response:
    """Asynchronous import of an NDJSON body (application/fhir+ndjson); poll the Content-Location."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in ("application/fhir+ndjson", "application/ndjson", "application/x-ndjson"):
        raise UnsupportedMedia("$import takes an NDJSON body (Content-Type: application/fhir+ndjson)")
    job = bulk.kick_off(ctx.session, ctx.principal, "import", "system", str(request.url), {})
    directory = bulk.bulk_dir() / str(job.id)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "input.ndjson"
    size = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            out.write(chunk)
    if size == 0:
        raise BadRequest("the NDJSON body is empty")
    ctx.session.commit()
    bulk.executor().submit(bulk.run_import, request.app.state.sessions, job.id, ctx.principal, path, ctx.base)
    return Response(status_code=202, headers={"Content-Location": f"{ctx.base}/$bulk-status/{job.id}"})


class UnsupportedMedia(Problem):
    status, title, code = 415, "Unsupported media type", "not-supported"


# --- the RESTful interactions --------------------------------------------------------------------


@router.get("/{resource_type}")
def search(resource_type: str, request: Request, ctx: FhirCtx) -> Response:
    result = service.search(
        ctx, resource_type, list(request.query_params.multi_items()), strict=strict(request)
    )
    return fhir_response(service.searchset(ctx, result))


@router.post("/{resource_type}/_search")
async def search_post(resource_type: str, request: Request, ctx: FhirCtx) -> Response:
    form = await request.form()
    items = [*request.query_params.multi_items(), *((k, str(v)) for k, v in form.multi_items())]
    result = service.search(ctx, resource_type, items, strict=strict(request))
    return fhir_response(service.searchset(ctx, result))


@router.post("/{resource_type}")
def create(resource_type: str, request: Request, ctx: FhirCtx, body: Body) -> Response:
    try:
        written = service.create(ctx, resource_type, body, if_none_exist=request.headers.get("if-none-exist"))
    except ObservationRejected as rejected:
        return outcome_response(rejected)  # the reading is kept as a dead letter: commit
    return written_response(request, ctx, written)


@router.get("/{resource_type}/{rid}")
def read(resource_type: str, rid: str, ctx: FhirCtx) -> Response:
    found = service.read(ctx, resource_type, rid)
    return fhir_response(found.resource, 200, resource_headers(ctx, found))


@router.put("/{resource_type}/{rid}")
def update(resource_type: str, rid: str, request: Request, ctx: FhirCtx, body: Body) -> Response:
    written = service.update(ctx, resource_type, rid, body, if_match=request.headers.get("if-match"))
    return written_response(request, ctx, written)


@router.delete("/{resource_type}/{rid}")
def delete(resource_type: str, rid: str, request: Request, ctx: FhirCtx) -> Response:
    service.delete(ctx, resource_type, rid, if_match=request.headers.get("if-match"))
    return Response(status_code=204)
