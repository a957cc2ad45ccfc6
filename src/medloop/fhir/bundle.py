"""Bundles posted to the base URL: `transaction` (all or nothing) and `batch` (each entry alone).

Transaction: entries run in FHIR's order (DELETE, POST, PUT, GET), creates in dependency order, so
that `urn:uuid:` references to resources created in the same Bundle are resolved to their new
`Type/id` before the referring entry is written. A reference to a `urn:uuid:` that is not in the
Bundle, or any failing entry, rolls everything back and answers an OperationOutcome that names
the entry. Observations run through the devices pipeline, all those of a Bundle in one call;
rejected readings are kept in the dead-letter table even when the transaction is rolled back.

Entries without `request` are taken as `POST <resourceType>` (device makers send plain Bundles).
A malformed entry (not an object, no request or resource, an unsupported method) fails a
transaction whole, and in a batch only itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session

from medloop.devices.ingest import store_dead_letters
from medloop.errors import BadRequest, PayloadTooLarge, Problem
from medloop.fhir import service
from medloop.fhir.access import authorise
from medloop.fhir.common import Ctx, Invalid, instant
from medloop.fhir.handler import Written
from medloop.fhir.mapping.observation import ObservationRejected
from medloop.fhir.registry import handler_for
from medloop.fhir.validation import validate
from medloop.store.base import utcnow

MAX_ENTRIES = 10_000
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None = None
    if_match: str | None = None
    depends: set[str] = field(default_factory=set)  # urn:uuid fullUrls referenced
    malformed: Problem | None = None  # a batch entry that cannot be run: answered with this

    @property
    def type(self) -> str:
        return self.url.partition("?")[0].split("/")[0]

    @property
    def rid(self) -> str:
        parts = self.url.partition("?")[0].split("/")
        return parts[1] if len(parts) > 1 else ""


class EntryFailed(Exception):
    def __init__(self, index: int, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.index, self.problem = index, problem


def parse(bundle: Any) -> tuple[str, list[Entry]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise Invalid("POST to the base URL takes a Bundle of type transaction or batch")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise Invalid(f"Bundle.type must be transaction or batch, not {kind!r}")
    raw = bundle.get("entry")
    if not isinstance(raw, list) or not raw:
        raise Invalid("Bundle.entry must be a non-empty array")
    if len(raw) > MAX_ENTRIES:
        raise PayloadTooLarge(f"a Bundle holds at most {MAX_ENTRIES} entries; this one has {len(raw)}")
    entries = []
    for i, e in enumerate(raw):
        try:
            entries.append(_entry(i, e))
        except Problem as problem:
            if kind == "transaction":  # all or nothing
                raise
            entries.append(Entry(i, "", "", None, None, malformed=problem))  # fails alone
    return kind, entries


def _entry(i: int, e: Any) -> Entry:
    if not isinstance(e, dict):
        raise Invalid(f"Bundle.entry[{i}] must be an object")
    resource = e.get("resource")
    request = e.get("request") or {}
    if not isinstance(request, dict) or (not request and not isinstance(resource, dict)):
        raise Invalid(f"Bundle.entry[{i}] needs request (method, url) or a resource")
    method = str(request.get("method") or "POST").upper()
    default_url = resource.get("resourceType", "") if isinstance(resource, dict) else ""
    url = str(request.get("url") or default_url).strip("/")
    if method not in ORDER:
        raise Invalid(f"Bundle.entry[{i}].request.method {method!r} is not supported")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise Invalid(f"Bundle.entry[{i}] ({method}) needs a resource")
    entry = Entry(
        i,
        method,
        url,
        resource if isinstance(resource, dict) else None,
        e.get("fullUrl"),
        request.get("ifNoneExist"),
        request.get("ifMatch"),
    )
    entry.depends = _urn_references(resource)
    return entry


def _urn_references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item.startswith("urn:uuid:"):
                found.add(item)
            else:
                found |= _urn_references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _urn_references(item)
    return found


def _rewrite(value: Any, resolved: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (resolved.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, resolved))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, resolved) for v in value]
    return value


def _order(entries: list[Entry]) -> list[Entry]:
    """FHIR's transaction order; creates after the creates they reference (stable otherwise)."""
    creates = {e.full_url: e for e in entries if e.method == "POST" and e.full_url}
    ordered: list[Entry] = []
    done: set[int] = set()

    def visit(e: Entry, path: set[int]) -> None:
        if e.index in done:
            return
        if e.index in path:
            raise BadRequest(f"Bundle.entry[{e.index}]: circular urn:uuid references between creates")
        for urn in sorted(e.depends):
            if urn in creates:
                visit(creates[urn], path | {e.index})
        done.add(e.index)
        ordered.append(e)

    for e in sorted(entries, key=lambda x: (ORDER[x.method], x.index)):
        if e.method == "POST":
            visit(e, set())
        else:
            done.add(e.index)
            ordered.append(e)
    return sorted(ordered, key=lambda x: ORDER[x.method])


def _response(
    entry: Entry, written: Written | None, found: Any = None, status: str | None = None
) -> dict[str, Any]:
    if written is not None:
        f = written.found
        resource = f.resource
        return {
            "fullUrl": None,
            "resource": resource,
            "response": {
                "status": status or ("201 Created" if written.created else "200 OK"),
                "location": f"{resource['resourceType']}/{f.id}/_history/{f.version}",
                "etag": f'W/"{f.version}"',
                **(
                    {"lastModified": resource["meta"]["lastUpdated"]}
                    if "lastUpdated" in resource.get("meta", {})
                    else {}
                ),
            },
        }
    return {"resource": found, "response": {"status": status or "200 OK"}}


def _outcome(problem: Problem, index: int | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": problem.code, "diagnostics": problem.detail}
    if index is not None:
        issue["expression"] = [f"Bundle.entry[{index}]"]
    issues = [issue] + [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": e.get("msg", ""),
            "expression": [str(e.get("loc", ""))],
        }
        for e in problem.errors
    ]
    return {"resourceType": "OperationOutcome", "issue": issues}


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]


def process(ctx: Ctx, bundle: Any, *, strict: bool = False) -> Outcome:
    kind, entries = parse(bundle)
    return transaction(ctx, entries, strict) if kind == "transaction" else batch(ctx, entries, strict)


def _run(ctx: Ctx, entry: Entry, strict: bool) -> dict[str, Any]:
    """One non-Observation-create entry."""
    if entry.method == "POST":
        assert entry.resource is not None
        written = service.create(ctx, entry.type, entry.resource, if_none_exist=entry.if_none_exist)
        return _response(entry, written)
    if entry.method == "PUT":
        written = service.update(ctx, entry.type, entry.rid, entry.resource, if_match=entry.if_match)
        return _response(entry, written)
    if entry.method == "DELETE":
        service.delete(ctx, entry.type, entry.rid, if_match=entry.if_match)
        return {"response": {"status": "204 No Content"}}
    if entry.rid:
        found = service.read(ctx, entry.type, entry.rid)
        return _response(entry, Written(found, False))
    items = parse_qsl(entry.url.partition("?")[2], keep_blank_values=True)
    result = service.search(ctx, entry.type, items, strict=strict)
    return _response(entry, None, service.searchset(ctx, result))


def _is_observation_create(entry: Entry) -> bool:
    return entry.method == "POST" and entry.type == "Observation" and not entry.if_none_exist


def _create_observations(ctx: Ctx, group: list[Entry], dead_letter: bool) -> list[Written | Exception]:
    """All Observation creates of a Bundle in one pipeline call; invalid ones fail alone."""
    handler = service.supported(handler_for("Observation"), "create")
    authorise(ctx.principal, handler, "create")
    outcomes: list[Written | Exception | None] = []
    valid: list[dict[str, Any]] = []
    for entry in group:
        try:
            valid.append(validate(entry.resource, "Observation"))
            outcomes.append(None)
        except Problem as exc:
            outcomes.append(exc)
    ingested = handler.ingest(ctx, valid, dead_letter=dead_letter) if valid else None  # type: ignore[attr-defined]
    results = iter(ingested.written if ingested else [])
    merged = [outcome if outcome is not None else next(results) for outcome in outcomes]
    service.audit_write(ctx, "create", "Observation", [w for w in merged if isinstance(w, Written)])
    return merged


def transaction(ctx: Ctx, entries: list[Entry], strict: bool) -> Outcome:
    known = {e.full_url for e in entries if e.full_url}
    for e in entries:
        missing = sorted(e.depends - known)
        if missing:
            problem = BadRequest(
                f"reference {missing[0]!r} is not the fullUrl of any entry in this transaction"
            )
            return Outcome(400, _outcome(problem, e.index))
    savepoint = ctx.session.begin_nested()
    resolved: dict[str, str] = {}
    responses: dict[int, dict[str, Any]] = {}
    rejected: list[ObservationRejected] = []
    try:
        ordered = _order(entries)
        pending_obs: list[Entry] = []

        def flush_observations() -> None:
            if not pending_obs:
                return
            for entry, outcome in zip(
                pending_obs, _create_observations(ctx, pending_obs, False), strict=True
            ):
                if isinstance(outcome, ObservationRejected):
                    rejected.append(outcome)
                elif isinstance(outcome, Exception):
                    raise EntryFailed(entry.index, _as_problem(outcome))
                else:
                    _record(entry, outcome, resolved, responses)
            if rejected:
                raise EntryFailed(pending_obs[rejected[0].rejected.index].index, rejected[0])
            pending_obs.clear()

        for entry in ordered:
            if entry.resource is not None and resolved:
                entry.resource = _rewrite(entry.resource, resolved)
            if _is_observation_create(entry) and not (entry.depends - resolved.keys()):
                pending_obs.append(entry)
                continue
            flush_observations()
            try:
                response = _run(ctx, entry, strict)
            except Problem as exc:
                raise EntryFailed(entry.index, exc) from None
            _record(entry, response, resolved, responses)
        flush_observations()
    except EntryFailed as failed:
        savepoint.rollback()
        _keep_dead_letters(ctx.session, rejected, utcnow())
        return Outcome(failed.problem.status, _outcome(failed.problem, failed.index))
    savepoint.commit()
    return Outcome(200, _bundle("transaction-response", entries, responses))


def _as_problem(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    raise exc


def _record(
    entry: Entry, outcome: Any, resolved: dict[str, str], responses: dict[int, dict[str, Any]]
) -> None:
    response = _response(entry, outcome) if isinstance(outcome, Written) else outcome
    if entry.full_url and entry.method == "POST" and "resource" in response:
        resource = response["resource"]
        resolved[entry.full_url] = f"{resource['resourceType']}/{resource['id']}"
    responses[entry.index] = response


def _keep_dead_letters(session: Session, rejected: list[ObservationRejected], now: datetime) -> None:
    if rejected:
        store_dead_letters(session, [r.rejected for r in rejected], "fhir", now)


def _bundle(kind: str, entries: list[Entry], responses: dict[int, dict[str, Any]]) -> dict[str, Any]:
    out = []
    for e in entries:
        response = responses[e.index]
        if e.full_url:
            response["fullUrl"] = e.full_url
        out.append({k: v for k, v in response.items() if v is not None})
    return {"resourceType": "Bundle", "type": kind, "timestamp": instant(utcnow()), "entry": out}


def batch(ctx: Ctx, entries: list[Entry], strict: bool) -> Outcome:
    responses: dict[int, dict[str, Any]] = {}
    observations = [e for e in entries if _is_observation_create(e) and not e.depends]
    if observations:
        _each(responses, observations, lambda: _create_observations(ctx, observations, True))
    for entry in entries:
        if entry.index in responses:
            continue
        if entry.malformed is not None:
            responses[entry.index] = _failed(entry.malformed)
            continue
        savepoint = ctx.session.begin_nested()
        try:
            if entry.depends:
                raise BadRequest("urn:uuid references are resolved in transactions only, not in a batch")
            responses[entry.index] = _run(ctx, entry, strict)
            savepoint.commit()
        except Problem as exc:
            savepoint.rollback()
            responses[entry.index] = _failed(exc)
    return Outcome(200, _bundle("batch-response", entries, responses))


def _each(
    responses: dict[int, dict[str, Any]],
    group: list[Entry],
    run: Callable[[], list[Written | Exception]],
) -> None:
    try:
        outcomes: list[Written | Exception] = run()
    except Problem as exc:  # e.g. the token may not create Observations: every entry fails alike
        outcomes = [exc] * len(group)
    for entry, outcome in zip(group, outcomes, strict=True):
        if isinstance(outcome, Written):
            responses[entry.index] = _response(entry, outcome)
        else:
            responses[entry.index] = _failed(_as_problem(outcome))


def _failed(problem: Problem) -> dict[str, Any]:
    return {"response": {"status": _status_line(problem.status), "outcome": _outcome(problem)}}


def _status_line(status: int) -> str:
    phrases = {
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        410: "Gone",
        412: "Precondition Failed",
        422: "Unprocessable Entity",
    }
    return f"{status} {phrases.get(status, 'Error')}"
