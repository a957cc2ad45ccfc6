"""Bulk Data: NDJSON export (system, Patient and Group level) and NDJSON import.

Export follows the Bulk Data Access IG's asynchronous pattern: the kick-off stores a job and
answers 202 with a Content-Location; a background worker (a thread pool, never the request
thread) writes one NDJSON file per resource type; polling the status URL answers 202 with
X-Progress until the job is done, then 200 with the output manifest; the files are downloaded
with the same bearer token. What is exported is exactly what the requester could search: the
facility scope and the token's SMART scopes apply, and every exported patient is audited.

Groups: `Group/<organisation id>` is the patients whose home facility is that organisation or
any organisation below it (see `mapping.network.GroupHandler`).

Import reads NDJSON (one resource per line). Observations are validated like on every route (the
fast path of `validation`) and go through the devices ingestion pipeline a chunk at a time (its
store stage is COPY on PostgreSQL); other resource types are validated and created one by one.
A bad line is reported with its file and line number and never stops the lines around it;
rejected readings are also dead-lettered.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session, sessionmaker

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import scoped_patients
from medloop.devices.ingest import Submitter
from medloop.devices.pipeline import gc_paused
from medloop.devices.types import Outcome
from medloop.errors import BadRequest, Forbidden, NotFound, Problem
from medloop.fhir import service
from medloop.fhir.access import can_export
from medloop.fhir.common import Ctx, Invalid, instant
from medloop.fhir.handler import AnySelect
from medloop.fhir.mapping.network import group_members
from medloop.fhir.mapping.observation import run_pipeline, with_serials
from medloop.fhir.models import BulkJob
from medloop.fhir.registry import handler_for, handlers, patient_data_types
from medloop.fhir.validation import validate
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.store.base import utcnow

BULK_DIR_ENV = "MEDLOOP_FHIR_BULK_DIR"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
NOT_EXPORTED_BY_DEFAULT = ("AuditEvent", "Group")
IMPORT_CHUNK = 5000
FILE_NAME = re.compile(r"^[A-Za-z]+\.ndjson$")
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def bulk_dir() -> Path:
    path = Path(os.environ.get(BULK_DIR_ENV) or Path(tempfile.gettempdir()) / "medloop-fhir-bulk")
    path.mkdir(parents=True, exist_ok=True)
    return path


def executor() -> ThreadPoolExecutor:
    """The background workers of bulk jobs (two: one export does not wait for another)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fhir-bulk")
        return _executor


# --- export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSpec:
    level: str  # system | patient | group
    types: tuple[str, ...]
    since: datetime | None = None
    group_id: uuid.UUID | None = None


def export_spec(
    principal: Principal, level: str, params: dict[str, str], group_id: uuid.UUID | None = None
) -> ExportSpec:
    """Check a kick-off's parameters; unknown types or formats are 400, forbidden types 403."""
    fmt = params.get("_outputFormat")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise BadRequest(f"_outputFormat {fmt!r} is not supported; use application/fhir+ndjson")
    since = None
    if params.get("_since"):
        try:
            since = datetime.fromisoformat(params["_since"].replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest("_since must be a FHIR instant, e.g. 2024-01-01T00:00:00Z") from None
        if since.tzinfo is None:
            raise BadRequest("_since needs a UTC offset")
    compartment = patient_data_types()
    if params.get("_type"):
        types = tuple(dict.fromkeys(t.strip() for t in params["_type"].split(",") if t.strip()))
        for t in types:
            handler = handler_for(t)  # 404 for unknown types
            if level != "system" and t not in compartment:
                raise BadRequest(f"{t} is not patient data; export it at system level")
            if not can_export(principal, t, handler.compartment) or not _role_allows(principal, t):
                raise Forbidden(f"the access token's scopes or roles do not allow reading {t}")
    else:
        candidates = list(handlers()) if level == "system" else compartment
        types = tuple(
            t
            for t in candidates
            if t not in NOT_EXPORTED_BY_DEFAULT
            and can_export(principal, t, handlers()[t].compartment)
            and _role_allows(principal, t)
        )
    if not types:
        raise Forbidden("the access token's scopes allow exporting none of these resource types")
    return ExportSpec(level, types, since, group_id)


def _role_allows(principal: Principal, resource_type: str) -> bool:
    roles = handlers()[resource_type].read_roles
    return not roles or principal.has_role("admin", *roles)


def patients_of(ctx: Ctx, spec: ExportSpec) -> AnySelect | None:
    if spec.level == "group":
        org = ctx.session.get(Organisation, spec.group_id)
        if org is None:
            raise NotFound(f"Group/{spec.group_id} not found")
        return group_members(ctx, org)
    if spec.level == "patient":
        return scoped_patients(ctx.principal).with_only_columns(Patient.id)
    return None


@dataclass
class ExportedFile:
    type: str
    path: Path
    count: int


def export_to(
    directory: Path,
    read: Session,
    audit: Session,
    principal: Principal,
    spec: ExportSpec,
    *,
    base: str = "",
    progress: Callable[[str], bool] | None = None,
) -> list[ExportedFile]:
    """Write one NDJSON file per type into `directory`. `read` streams; `audit` records each
    exported batch's patients and is committed per batch. `progress(text)` returning False stops."""
    directory.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(read, principal, base)
    patients = patients_of(ctx, spec)
    files: list[ExportedFile] = []
    for rtype in spec.types:
        handler = handler_for(rtype)
        path = directory / f"{rtype}.ndjson"
        count = 0
        with path.open("wb") as out:
            for batch in handler.stream(ctx, patients, spec.since):
                out.write(b"".join(orjson.dumps(f.resource) + b"\n" for f in batch))
                count += len(batch)
                record_access(
                    audit,
                    principal,
                    "export",
                    rtype,
                    [f.patient_id for f in batch],
                    detail={"level": spec.level, "resources": len(batch)},
                )
                audit.commit()
                if progress is not None and not progress(f"{rtype}: {count} resources"):
                    return files
        files.append(ExportedFile(rtype, path, count))
    return files


def kick_off(
    session: Session,
    principal: Principal,
    kind: str,
    level: str,
    request_url: str,
    params: dict[str, Any],
    group_id: uuid.UUID | None = None,
) -> BulkJob:
    job = BulkJob(
        id=uuid.uuid4(),
        kind=kind,
        level=level,
        group_id=group_id,
        status="accepted",
        progress="queued",
        request_url=request_url[:1000],
        actor_id=principal.user_id,
        actor=principal.username,
        params=params,
        manifest=None,
        error=None,
    )
    session.add(job)
    session.flush()
    record_access(session, principal, kind, "Bulk", [], resource_id=str(job.id), detail={"level": level})
    return job


def run_export(
    sessions: sessionmaker[Session], job_id: uuid.UUID, principal: Principal, spec: ExportSpec, base: str
) -> None:
    """The background worker of one export job."""
    directory = bulk_dir() / str(job_id)

    def progress(text: str) -> bool:
        with sessions() as s:
            job = s.get(BulkJob, job_id)
            if job is None or job.status == "cancelled":
                return False
            job.status, job.progress = "running", text[:200]
            s.commit()
            return True

    try:
        with sessions() as read, sessions() as audit:
            if not progress("started"):
                return
            files = export_to(directory, read, audit, principal, spec, base=base, progress=progress)
        manifest_files = [
            {"type": f.type, "url": f"{base}/$bulk-file/{job_id}/{f.path.name}", "count": f.count}
            for f in files
        ]
        _finish(sessions, job_id, "completed", outputs=manifest_files)
    except Exception as exc:  # recorded on the job; no patient data in the message
        reason = exc.detail if isinstance(exc, Problem) else type(exc).__name__
        _finish(sessions, job_id, "failed", error=reason)


def _finish(
    sessions: sessionmaker[Session],
    job_id: uuid.UUID,
    status: str,
    *,
    outputs: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> None:
    with sessions() as s:
        job = s.get(BulkJob, job_id)
        if job is None or job.status == "cancelled":
            return
        job.status, job.finished_at, job.error = status, utcnow(), (error or None) and error[:1000]
        job.progress = "done" if status == "completed" else status
        if outputs is not None:
            job.manifest = {
                "transactionTime": instant(job.created_at),
                "request": job.request_url,
                "requiresAccessToken": True,
                "output": outputs,
                "error": errors or [],
            }
        s.commit()


def job_for(session: Session, principal: Principal, job_id: uuid.UUID) -> BulkJob:
    """The job, if the caller started it (admins see every job)."""
    job = session.get(BulkJob, job_id)
    if (
        job is None
        or job.status == "cancelled"
        or (job.actor_id != principal.user_id and not principal.has_role("admin"))
    ):
        raise NotFound("no such bulk job")
    return job


def job_file(job: BulkJob, name: str) -> Path:
    if not FILE_NAME.match(name) or job.status != "completed":
        raise NotFound("no such file")
    path = bulk_dir() / str(job.id) / name
    if not path.is_file():
        raise NotFound("no such file")
    return path


def cancel(session: Session, job: BulkJob) -> None:
    job.status, job.finished_at = "cancelled", utcnow()
    session.flush()
    directory = bulk_dir() / str(job.id)
    if directory.is_dir():
        for child in directory.iterdir():
            child.unlink(missing_ok=True)
        directory.rmdir()


# --- import -----------------------------------------------------------------------------------


@dataclass
class LineError:
    file: str
    line: int
    message: str

    def outcome(self) -> dict[str, Any]:
        return {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "invalid",
                    "diagnostics": f"{self.file} line {self.line}: {self.message}",
                    "location": [f"{self.file}:{self.line}"],
                }
            ],
        }


@dataclass
class ImportReport:
    created: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    errors: list[LineError] = field(default_factory=list)

    def add(self, rtype: str, n: int = 1) -> None:
        self.created[rtype] = self.created.get(rtype, 0) + n


def ndjson_chunks(path: Path, report: ImportReport) -> Iterator[list[tuple[int, Any]]]:
    """The file's resources, `IMPORT_CHUNK` lines at a time, as (line number, decoded JSON);
    lines that are not JSON are reported and left out."""
    with path.open("rb") as handle:
        numbered = enumerate(handle, start=1)
        while batch := list(islice(numbered, IMPORT_CHUNK)):
            chunk: list[tuple[int, Any]] = []
            with gc_paused():  # thousands of small objects, no cycles: no collection needed
                for number, line in batch:
                    if not line.strip():
                        continue
                    try:
                        chunk.append((number, orjson.loads(line)))
                    except orjson.JSONDecodeError as exc:
                        report.errors.append(LineError(path.name, number, f"not valid JSON: {exc}"))
            yield chunk


def import_files(
    sessions: sessionmaker[Session],
    principal: Principal,
    files: Iterable[Path],
    *,
    submitter: Submitter | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import NDJSON files; each chunk of lines is committed on its own."""
    report = ImportReport()
    who = submitter or Submitter(principal, check_scope=not principal.unrestricted)
    for path in files:
        for chunk in ndjson_chunks(path, report):
            if chunk:
                _import_chunk(sessions, principal, who, path.name, chunk, report)
                if progress is not None:
                    progress(f"{path.name}: line {chunk[-1][0]}")
    return report


def _import_chunk(
    sessions: sessionmaker[Session],
    principal: Principal,
    who: Submitter,
    name: str,
    chunk: list[tuple[int, Any]],
    report: ImportReport,
) -> None:
    observations = [
        (n, r) for n, r in chunk if isinstance(r, dict) and r.get("resourceType") == "Observation"
    ]
    others = [
        (n, r) for n, r in chunk if not (isinstance(r, dict) and r.get("resourceType") == "Observation")
    ]
    with sessions() as session:
        ctx = Ctx(session, principal, "", submitter=lambda: who)
        if observations:
            _import_observations(ctx, name, observations, report)
        for number, resource in others:
            savepoint = session.begin_nested()
            try:
                if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                    raise BadRequest("the line is not a FHIR resource")
                service.create(ctx, resource["resourceType"], resource)
                savepoint.commit()
                report.add(resource["resourceType"])
            except Problem as exc:
                savepoint.rollback()
                report.errors.append(LineError(name, number, exc.detail))
        session.commit()


def _import_observations(
    ctx: Ctx, name: str, lines: list[tuple[int, dict[str, Any]]], report: ImportReport
) -> None:
    """The fast path: each line validated as on every other route, then the whole chunk through
    the pipeline in one call (its store stage is COPY); rejects are dead-lettered."""
    service.authorise_type(ctx.principal, "Observation", "create")
    valid: list[tuple[int, dict[str, Any]]] = []
    for number, resource in lines:
        try:
            valid.append((number, validate(resource, "Observation")))
        except Invalid as exc:
            report.errors.append(LineError(name, number, exc.detail))
    if not valid:
        return
    resources = with_serials(ctx, [r for _, r in valid])
    result = run_pipeline(ctx, resources, channel="bulk", dead_letter=True)
    for item in result.items:
        if item.status is Outcome.STORED:
            report.add("Observation")
        elif item.status is Outcome.DUPLICATE:
            report.duplicates += 1
        else:
            report.errors.append(LineError(name, valid[item.index][0], f"{item.reason}: {item.detail}"))


def run_import(
    sessions: sessionmaker[Session], job_id: uuid.UUID, principal: Principal, path: Path, base: str
) -> None:
    """The background worker of one $import job: `path` holds the posted NDJSON."""

    def progress(text: str) -> None:
        with sessions() as s:
            job = s.get(BulkJob, job_id)
            if job is not None and job.status != "cancelled":
                job.status, job.progress = "running", text[:200]
                s.commit()

    try:
        progress("started")
        report = import_files(sessions, principal, [path], progress=progress)
        outputs = [{"type": t, "count": n} for t, n in sorted(report.created.items())]
        errors = []
        if report.errors:
            error_path = path.parent / "OperationOutcome.ndjson"
            error_path.write_bytes(b"".join(orjson.dumps(e.outcome()) + b"\n" for e in report.errors))
            errors = [
                {
                    "type": "OperationOutcome",
                    "url": f"{base}/$bulk-file/{job_id}/OperationOutcome.ndjson",
                    "count": len(report.errors),
                }
            ]
        _finish(sessions, job_id, "completed", outputs=outputs, errors=errors)
    except Exception as exc:
        reason = exc.detail if isinstance(exc, Problem) else type(exc).__name__
        _finish(sessions, job_id, "failed", error=reason)
    finally:
        path.unlink(missing_ok=True)
