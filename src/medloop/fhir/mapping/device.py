"""Device ↔ `device` (+ its current binding as `Device.patient`). Writes go through
`medloop.devices.service`: creating a Device with a `patient` registers and binds it.

The binding says which patient a reading belongs to; it is shown only when that patient is in
the caller's facility scope.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ColumnElement, select

from medloop.auth.models import Role
from medloop.auth.scope import patient_in_scope
from medloop.devices import service
from medloop.devices.models import Device, DeviceBinding
from medloop.errors import Unprocessable
from medloop.fhir.common import (
    DEVICE_KIND_SYSTEM,
    DEVICE_SERIAL_SYSTEM,
    Ctx,
    code_in,
    first,
    meta,
    ref,
    reference_id,
    version_of,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written
from medloop.fhir.search import Param, Query, enum_token, reference, token_param
from medloop.network.models import Organisation


def device_to_fhir(device: Device, patient_id: Any | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Device",
        "id": str(device.id),
        "meta": meta(version_of(device.updated_at), device.updated_at),
        "identifier": [{"system": DEVICE_SERIAL_SYSTEM, "value": device.serial}],
        "status": "active" if device.active else "inactive",
        "serialNumber": device.serial,
        "type": {"coding": [{"system": DEVICE_KIND_SYSTEM, "code": device.kind}]},
    }
    if device.model:
        doc["modelNumber"] = device.model
    if device.firmware:
        doc["version"] = [{"type": {"text": "firmware"}, "value": device.firmware}]
    if device.manufacturer_id:
        doc["owner"] = ref("Organization", device.manufacturer_id)
    if patient_id is not None:
        doc["patient"] = ref("Patient", patient_id)
    return doc


def _serial_token(system: str | None, code: str) -> ColumnElement[bool] | None:
    return Device.serial == code if system in (None, "", DEVICE_SERIAL_SYSTEM) else None


class DeviceHandler(TableHandler):
    type = "Device"
    interactions = ("read", "search-type", "create")
    write_roles = (Role.ADMIN, Role.PROGRAMME_MANAGER)
    id_column = Device.id
    updated_column = Device.updated_at
    sort_columns: ClassVar[dict[str, Any]] = {"_lastUpdated": Device.updated_at}
    doc = "Registered devices; Device.patient is the current binding (when in your scope)."

    def params(self) -> dict[str, Param]:
        return {
            **self.common_params(),
            "identifier": token_param("identifier", "Serial number", _serial_token),
            "type": enum_token("type", Device.kind, "Device kind (bp_monitor, glucometer, ...)"),
            "status": enum_token(
                "status",
                Device.active,
                "active | inactive",
                {"active": True, "inactive": False},  # type: ignore[dict-item]
            ),
            "patient": self._patient_param(),
        }

    def _patient_param(self) -> Param:
        def build(values: list[str], _modifier: str) -> ColumnElement[bool]:
            ids = [u for u in (reference(v, "Patient") for v in values) if u is not None]
            bound = select(DeviceBinding.device_id).where(
                DeviceBinding.end_at.is_(None), DeviceBinding.patient_id.in_(ids)
            )
            return Device.id.in_(bound)

        return Param(
            "patient", "reference", "Patient the device is bound to now", build, frozenset({"Patient"})
        )

    def filtered(self, ctx: Ctx, query: Query) -> AnySelect:
        stmt = super().filtered(ctx, query)
        if any(param.name == "patient" for param, _, _ in query.filters):  # only patients in scope
            visible = patient_in_scope(ctx.principal, DeviceBinding.patient_id)
            bound = select(DeviceBinding.device_id).where(DeviceBinding.end_at.is_(None), visible)
            stmt = stmt.where(Device.id.in_(bound))
        return stmt

    def base(self, ctx: Ctx) -> AnySelect:
        visible = patient_in_scope(ctx.principal, DeviceBinding.patient_id)
        current = (
            select(DeviceBinding.patient_id)
            .where(DeviceBinding.device_id == Device.id, DeviceBinding.end_at.is_(None), visible)
            .limit(1)
            .scalar_subquery()
        )
        return select(Device, current.label("patient_id"))

    def to_fhir(self, row: Any) -> Found:
        return Found(device_to_fhir(row[0], row[1]))

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        serial = resource.get("serialNumber") or next(
            (
                i.get("value")
                for i in resource.get("identifier") or []
                if i.get("system") == DEVICE_SERIAL_SYSTEM
            ),
            None,
        )
        if not serial:
            raise Unprocessable(
                f"Device.serialNumber (or an identifier in {DEVICE_SERIAL_SYSTEM}) is required"
            )
        kind = code_in(resource.get("type"), DEVICE_KIND_SYSTEM)
        if not kind:
            raise Unprocessable(f"Device.type needs a coding in {DEVICE_KIND_SYSTEM}")
        manufacturer_code = None
        if "owner" in resource:
            org = ctx.session.get(
                Organisation, reference_id(resource["owner"], "Organization", "Device.owner")
            )
            if org is None:
                raise Unprocessable("Device.owner does not resolve to an Organization")
            manufacturer_code = org.code
        version = first(resource.get("version")) or {}
        device = service.register_device(
            ctx.session,
            str(serial),
            kind,
            model=str(resource.get("modelNumber") or ""),
            manufacturer_code=manufacturer_code,
            firmware=version.get("value"),
        )
        patient_id = None
        if "patient" in resource:
            patient_id = reference_id(resource["patient"], "Patient", "Device.patient")
            service.bind(ctx.session, ctx.principal, device.serial, patient_id)
        return Written(Found(device_to_fhir(device, patient_id), patient_id), True)
