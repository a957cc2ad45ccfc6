"""The FHIR interactions (read, search, create, update, delete) around the handlers:
authorisation (SMART scopes, roles), validation, conditional create, auditing, and the searchset
Bundle with its paging links. The REST router, bundles and bulk data all call these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.exc import IntegrityError

from medloop.auth.audit import record_access
from medloop.errors import BadRequest, Conflict, PreconditionFailed
from medloop.fhir.access import authorise, permits, scopes_of
from medloop.fhir.common import Ctx, NotSupported
from medloop.fhir.handler import Found, Handler, Page, Written
from medloop.fhir.registry import handler_for
from medloop.fhir.search import Query, parse_query
from medloop.fhir.validation import validate


def params_of(handler: Handler) -> dict[str, Any]:
    cached: dict[str, Any] | None = handler.__dict__.get("_params")
    if cached is None:
        cached = handler.params()
        handler.__dict__["_params"] = cached
    return cached


def supported(handler: Handler, interaction: str) -> Handler:
    if interaction not in handler.interactions:
        raise NotSupported(f"{interaction} is not supported for {handler.type}; see /fhir/metadata")
    return handler


def authorise_type(principal: Any, resource_type: str, interaction: str) -> Handler:
    handler = supported(handler_for(resource_type), interaction)
    authorise(principal, handler, interaction)
    return handler


def _query(handler: Handler, items: Sequence[tuple[str, str]], strict: bool) -> Query:
    includes = [f"{handler.type}:{p}" for p in handler.includes]
    return parse_query(items, params_of(handler), handler.sort_names, includes, handler.type, strict=strict)


def read(ctx: Ctx, resource_type: str, rid: str) -> Found:
    handler = supported(handler_for(resource_type), "read")
    authorise(ctx.principal, handler, "read")
    found = handler.read(ctx, rid)
    record_access(ctx.session, ctx.principal, "read", resource_type, [found.patient_id], resource_id=rid)
    return found


@dataclass
class SearchResult:
    handler: Handler
    query: Query
    page: Page
    included: list[Found] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def search(ctx: Ctx, resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool) -> SearchResult:
    handler = supported(handler_for(resource_type), "search-type")
    authorise(ctx.principal, handler, "search-type")
    query = _query(handler, items, strict)
    page = handler.search(ctx, query)
    result = SearchResult(handler, query, page)
    if query.ignored:
        result.warnings.append(
            f"unknown or unsupported search parameters ignored: {', '.join(query.ignored)}"
        )
    for include in query.include:
        _include(ctx, result, include.partition(":")[2])
    patients = [f.patient_id for f in [*page.found, *result.included]]
    record_access(
        ctx.session,
        ctx.principal,
        "search",
        resource_type,
        patients,
        detail={
            "returned": len(page.found),
            "included": len(result.included),
            "params": sorted({k for k, _ in query.used}),
        },
    )
    return result


def _include(ctx: Ctx, result: SearchResult, param: str) -> None:
    target = handler_for(result.handler.includes[param])
    if not permits(scopes_of(ctx.principal), target.type, "s", target.compartment):
        result.warnings.append(f"_include of {target.type} skipped: the token's scopes do not allow it")
        return
    if target.type == "Patient":
        ids = {str(f.patient_id) for f in result.page.found if f.patient_id is not None}
    else:
        refs = [f.resource.get(param, {}).get("reference", "") for f in result.page.found]
        ids = {r.rpartition("/")[2] for r in refs if r.startswith(f"{target.type}/")}
    if ids:
        # through the target's own search: the same facility scope applies to what is included
        items = [("_id", ",".join(sorted(ids))), ("_count", "1000"), ("_total", "none")]
        page = target.search(ctx, _query(target, items, True))
        result.included.extend(page.found)


def create(
    ctx: Ctx, resource_type: str, body: Any, *, if_none_exist: str | None = None, checked: bool = False
) -> Written:
    handler = supported(handler_for(resource_type), "create")
    authorise(ctx.principal, handler, "create")
    resource = body if checked else validate(body, resource_type)
    if if_none_exist:
        existing = conditional_match(ctx, handler, if_none_exist)
        if existing is not None:
            record_access(
                ctx.session,
                ctx.principal,
                "read",
                resource_type,
                [existing.patient_id],
                resource_id=existing.id,
            )
            return Written(existing, False)
    written = _write(lambda: handler.create(ctx, {k: v for k, v in resource.items() if k != "id"}))
    audit_write(ctx, "create", resource_type, [written])
    return written


def audit_write(ctx: Ctx, action: str, resource_type: str, written: Sequence[Written]) -> None:
    if handler_for(resource_type).audits_writes:
        return
    for w in written:
        record_access(
            ctx.session, ctx.principal, action, resource_type, [w.found.patient_id], resource_id=w.found.id
        )


def conditional_match(ctx: Ctx, handler: Handler, criteria: str) -> Found | None:
    """If-None-Exist: the one match (None if none; 412 if several)."""
    items = parse_qsl(criteria.partition("?")[2] if "?" in criteria else criteria, keep_blank_values=True)
    if not items:
        raise BadRequest("If-None-Exist needs search criteria, e.g. identifier=system|value")
    page = handler.search(ctx, _query(handler, [*items, ("_count", "2"), ("_total", "none")], True))
    if len(page.found) > 1:
        raise PreconditionFailed(f"If-None-Exist matches more than one {handler.type}")
    return page.found[0] if page.found else None


def update(ctx: Ctx, resource_type: str, rid: str, body: Any, *, if_match: str | None) -> Written:
    handler = supported(handler_for(resource_type), "update")
    authorise(ctx.principal, handler, "update")
    resource = validate(body, resource_type)
    if resource.get("id") != rid:
        raise BadRequest(f"the resource's id ({resource.get('id')!r}) must be the id in the URL ({rid!r})")
    written = _write(lambda: handler.update(ctx, rid, resource, if_match))
    audit_write(ctx, "update", resource_type, [written])
    return written


def delete(ctx: Ctx, resource_type: str, rid: str, *, if_match: str | None) -> None:
    handler = supported(handler_for(resource_type), "delete")
    authorise(ctx.principal, handler, "delete")
    patient_id = handler.delete(ctx, rid, if_match)
    record_access(ctx.session, ctx.principal, "delete", resource_type, [patient_id], resource_id=rid)


def _write(action: Any) -> Written:
    try:
        written: Written = action()
    except IntegrityError as exc:
        raise Conflict("the resource conflicts with one that exists (a unique key is already used)") from exc
    return written


# --- searchset Bundle ---------------------------------------------------------------------------


def searchset(ctx: Ctx, result: SearchResult) -> dict[str, Any]:
    query, page, rtype = result.query, result.page, result.handler.type

    def link(relation: str, offset: int) -> dict[str, str]:
        params = [(k, v) for k, v in query.used if k != "_count"] + [("_count", str(query.count))]
        if offset:
            params.append(("_offset", str(offset)))
        return {"relation": relation, "url": f"{ctx.base}/{rtype}?{urlencode(params)}"}

    links = [link("self", query.offset), link("first", 0)]
    if query.offset > 0:
        links.append(link("previous", max(0, query.offset - query.count)))
    more = (
        page.total > query.offset + query.count
        if page.total is not None
        else len(page.found) == query.count and query.count > 0
    )
    if more and not query.summary_count:
        links.append(link("next", query.offset + query.count))
    if page.total is not None and query.count > 0 and page.total > 0:
        links.append(link("last", ((page.total - 1) // query.count) * query.count))
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{ctx.base}/{rtype}/{f.id}", "resource": f.resource, "search": {"mode": "match"}}
        for f in page.found
    ]
    entries += [
        {
            "fullUrl": f"{ctx.base}/{f.resource['resourceType']}/{f.id}",
            "resource": f.resource,
            "search": {"mode": "include"},
        }
        for f in result.included
    ]
    if result.warnings:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "warning", "code": "not-supported", "diagnostics": w} for w in result.warnings
            ],
        }
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle
