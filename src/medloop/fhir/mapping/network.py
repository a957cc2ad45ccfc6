"""Organization and Location ↔ `organisation`; Group (a facility's patients) for bulk export.

Every organisation of the care network is served twice: as an Organization (who: tier, parent,
capabilities) and as a Location with the same id (where: position, address). A Group with the
same id stands for the patients of that facility and every facility below it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import ColumnElement, func, select

from medloop.auth.models import Role
from medloop.auth.scope import descendants, scoped_patients
from medloop.errors import NotFound, Unprocessable, error_summary, field_errors
from medloop.fhir.common import (
    CAPABILITY_EXTENSION,
    GEOLOCATION_EXTENSION,
    ORG_CODE_SYSTEM,
    TIER_SYSTEM,
    Ctx,
    code_in,
    first,
    meta,
    ref,
    reference_id,
    version_of,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written
from medloop.fhir.search import Param, bool_token, enum_token, reference_param, string_param, token_param
from medloop.network import service
from medloop.network.models import Organisation
from medloop.network.schemas import OrganisationIn
from medloop.people.models import Patient


def _address(org: Organisation) -> dict[str, Any]:
    return {
        "state": org.province_code,
        "city": org.city_code,
        "district": org.district_code,
        "country": "CN",
        "extension": [
            {
                "url": GEOLOCATION_EXTENSION,
                "extension": [
                    {"url": "latitude", "valueDecimal": org.latitude},
                    {"url": "longitude", "valueDecimal": org.longitude},
                ],
            }
        ],
    }


def organization_to_fhir(org: Organisation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Organization",
        "id": str(org.id),
        "meta": meta(version_of(org.updated_at), org.updated_at),
        "identifier": [{"system": ORG_CODE_SYSTEM, "value": org.code}],
        "active": org.active,
        "type": [{"coding": [{"system": TIER_SYSTEM, "code": org.tier}]}],
        "name": org.name,
        "address": [_address(org)],
    }
    if org.capabilities:
        doc["extension"] = [{"url": CAPABILITY_EXTENSION, "valueCode": c} for c in org.capabilities]
    if org.parent_id:
        doc["partOf"] = ref("Organization", org.parent_id)
    return doc


def location_to_fhir(org: Organisation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Location",
        "id": str(org.id),
        "meta": meta(version_of(org.updated_at), org.updated_at),
        "identifier": [{"system": ORG_CODE_SYSTEM, "value": org.code}],
        "status": "active" if org.active else "inactive",
        "name": org.name,
        "mode": "instance",
        "address": {k: v for k, v in _address(org).items() if k != "extension"},
        "position": {"latitude": org.latitude, "longitude": org.longitude},
        "managingOrganization": ref("Organization", org.id),
    }
    if org.parent_id:
        doc["partOf"] = ref("Location", org.parent_id)
    return doc


def _code_token(system: str | None, code: str) -> ColumnElement[bool] | None:
    return Organisation.code == code if system in (None, "", ORG_CODE_SYSTEM) else None


def _geolocation(address: dict[str, Any]) -> tuple[float, float]:
    for ext in address.get("extension") or []:
        if ext.get("url") == GEOLOCATION_EXTENSION:
            parts = {e.get("url"): e.get("valueDecimal") for e in ext.get("extension") or []}
            if isinstance(parts.get("latitude"), int | float) and isinstance(
                parts.get("longitude"), int | float
            ):
                return float(parts["latitude"]), float(parts["longitude"])
    raise Unprocessable(
        f"Organization.address[0] needs the {GEOLOCATION_EXTENSION} extension (latitude, longitude)"
    )


class OrganizationHandler(TableHandler):
    type = "Organization"
    interactions = ("read", "search-type", "create")
    write_roles = (Role.ADMIN,)
    id_column = Organisation.id
    updated_column = Organisation.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "name": Organisation.name,
        "_lastUpdated": Organisation.updated_at,
    }
    doc = "The care network's organisations (tier, parent, capabilities)."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "identifier": token_param("identifier", "Organisation code", _code_token),
            "name": string_param("name", [Organisation.name], "Name"),
            "type": enum_token("type", Organisation.tier, "Tier (tertiary_hub, secondary, primary, ...)"),
            "partof": reference_param(
                "partof", Organisation.parent_id, "Organization", "Parent organisation"
            ),
            "active": bool_token("active", Organisation.active, "Whether active"),
            "address-district": enum_token("address-district", Organisation.district_code, "District code"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return select(Organisation)

    def to_fhir(self, row: Any) -> Found:
        return Found(organization_to_fhir(row[0]))

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        code = next(
            (i.get("value") for i in resource.get("identifier") or [] if i.get("system") == ORG_CODE_SYSTEM),
            None,
        )
        if not code:
            raise Unprocessable(
                f"Organization.identifier with system {ORG_CODE_SYSTEM} (the code) is required"
            )
        address = first(resource.get("address")) or {}
        latitude, longitude = _geolocation(address)
        parent_code = None
        if "partOf" in resource:
            parent = ctx.session.get(
                Organisation, reference_id(resource["partOf"], "Organization", "Organization.partOf")
            )
            if parent is None:
                raise Unprocessable("Organization.partOf does not resolve")
            parent_code = parent.code
        try:
            data = OrganisationIn(
                code=str(code),
                name=str(resource.get("name") or ""),
                tier=code_in(first(resource.get("type")), TIER_SYSTEM) or "",
                parent_code=parent_code,
                province_code=address.get("state", ""),
                city_code=address.get("city", ""),
                district_code=address.get("district", ""),
                latitude=latitude,
                longitude=longitude,
                capabilities=[
                    e.get("valueCode")
                    for e in resource.get("extension") or []
                    if e.get("url") == CAPABILITY_EXTENSION
                ],
            )
        except ValidationError as exc:
            detail = error_summary(field_errors(exc.errors()))
            raise Unprocessable(
                f"Organization does not fit medloop's organisation record: {detail}"
            ) from None
        org = service.create_organisation(ctx.session, data)
        return Written(Found(organization_to_fhir(org)), True)


class LocationHandler(TableHandler):
    type = "Location"
    id_column = Organisation.id
    updated_column = Organisation.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {"name": Organisation.name}
    doc = "Where each organisation is (same id as its Organization); read-only."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "identifier": token_param("identifier", "Organisation code", _code_token),
            "name": string_param("name", [Organisation.name], "Name"),
            "organization": reference_param("organization", Organisation.id, "Organization", "Managing org"),
            "partof": reference_param("partof", Organisation.parent_id, "Location", "Parent location"),
            "address-district": enum_token("address-district", Organisation.district_code, "District code"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        return select(Organisation)

    def to_fhir(self, row: Any) -> Found:
        return Found(location_to_fhir(row[0]))


def group_members(ctx: Ctx, org: Organisation) -> AnySelect:
    """The patients of a facility group that the caller may see: home facility at or below it."""
    below = descendants(ctx.session, [org.id])
    return (
        scoped_patients(ctx.principal)
        .where(Patient.home_facility_id.in_(below))
        .with_only_columns(Patient.id)
    )


class GroupHandler(TableHandler):
    """Facility groups: Group/<organisation id> = the patients of that facility and those below it."""

    type = "Group"
    read_roles = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
    id_column = Organisation.id
    sort_columns: ClassVar[dict[str, Any]] = {"name": Organisation.name}
    doc = "A facility's patients (id = the organisation's id), for Group/[id]/$export."

    def params(self) -> dict[str, Param]:
        return {**self.common_params(), "name": string_param("name", [Organisation.name], "Facility name")}

    def base(self, ctx: Ctx) -> AnySelect:
        return select(Organisation)

    def read(self, ctx: Ctx, rid: str) -> Found:
        org = ctx.session.get(Organisation, self.parse_id(rid))
        if org is None:
            raise NotFound(f"Group/{rid} not found")
        return self.to_fhir((org,), ctx)

    def hydrate(self, ctx: Ctx, rows: Any) -> list[Found]:
        return [self.to_fhir(r, ctx) for r in rows]

    def to_fhir(self, row: Any, ctx: Ctx | None = None) -> Found:
        org: Organisation = row[0]
        doc: dict[str, Any] = {
            "resourceType": "Group",
            "id": str(org.id),
            "meta": meta(version_of(org.updated_at), org.updated_at),
            "identifier": [{"system": ORG_CODE_SYSTEM, "value": org.code}],
            "type": "person",
            "actual": True,
            "name": f"Patients of {org.name}",
            "managingEntity": ref("Organization", org.id),
        }
        if ctx is not None:
            members = group_members(ctx, org)
            doc["quantity"] = ctx.session.scalar(select(func.count()).select_from(members.subquery())) or 0
        return Found(doc)
