"""FHIR R4 Observations (vital-signs profile) and Bundles of them (type batch or transaction).

The JSON is read directly (no model classes): it is the hot path, and each problem is reported
with the reason a device maker can act on. Mapping:

    code.coding[system=http://loinc.org].code  -> the reading's code (85354-9 for a BP panel)
    component[].code / component[].valueQuantity -> the panel's quantities (8480-6, 8462-4)
    valueQuantity.code (UCUM) or .unit          -> the unit
    effectiveDateTime | effectiveInstant | effectivePeriod.start -> effective time
    device.identifier.value | device.display    -> the device serial

The patient is the one the device is bound to at the effective time; `subject` is not trusted.
"""

from __future__ import annotations

from typing import Any

from medloop.clinical.codes import LOINC_SYSTEM, UCUM_SYSTEM
from medloop.devices.payloads.common import ItemError, PayloadError, instant, number, rejected, text
from medloop.devices.types import Item, Reason, Rejected

FORMAT = "fhir"
BUNDLE_TYPES = ("batch", "transaction")
ACCEPTED_STATUSES = ("final", "amended", "corrected", "preliminary")


def bundle_entries(bundle: dict[str, Any]) -> list[Any]:
    """The resources of a batch/transaction Bundle, in order (PayloadError if it is not one)."""
    if bundle.get("type") not in BUNDLE_TYPES:
        raise PayloadError(f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise PayloadError("Bundle.entry must be a non-empty array")
    return [e.get("resource") if isinstance(e, dict) else e for e in entries]


def parse_bundle(bundle: dict[str, Any], default_serial: str | None) -> list[Item | Rejected]:
    return [parse_observation(res, i, default_serial) for i, res in enumerate(bundle_entries(bundle))]


def _loinc(concept: Any, where: str) -> str:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        raise ItemError(f"{where}.coding must be an array")
    for coding in codings:
        if isinstance(coding, dict) and coding.get("system") == LOINC_SYSTEM and coding.get("code"):
            return text(coding["code"], f"{where}.coding.code")
    raise ItemError(f"{where} has no LOINC coding (system {LOINC_SYSTEM})", Reason.UNKNOWN_CODE)


def _quantity(qty: Any, where: str) -> tuple[float, str]:
    if not isinstance(qty, dict):
        raise ItemError(f"{where} is missing (a Quantity is required)")
    value = number(qty.get("value"), f"{where}.value")
    unit = qty.get("code") if qty.get("system") == UCUM_SYSTEM and qty.get("code") else qty.get("unit")
    return value, text(unit, f"{where}.code/unit")


def _effective(obs: dict[str, Any]) -> Any:
    if "effectiveDateTime" in obs:
        return instant(obs["effectiveDateTime"], "effectiveDateTime")
    if "effectiveInstant" in obs:
        return instant(obs["effectiveInstant"], "effectiveInstant")
    period = obs.get("effectivePeriod")
    if isinstance(period, dict) and "start" in period:
        return instant(period["start"], "effectivePeriod.start")
    raise ItemError("effectiveDateTime (or effectiveInstant, effectivePeriod.start) is required")


def _serial(obs: dict[str, Any], default_serial: str | None) -> str | None:
    device = obs.get("device")
    if isinstance(device, dict):
        ident = device.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            return str(ident["value"])
        if isinstance(device.get("display"), str):
            return str(device["display"])
    return default_serial


def parse_observation(obs: Any, index: int, default_serial: str | None) -> Item | Rejected:
    serial = _serial(obs, default_serial) if isinstance(obs, dict) else default_serial
    try:
        if not isinstance(obs, dict) or obs.get("resourceType") != "Observation":
            raise ItemError("resource must be an Observation")
        if obs.get("status") not in ACCEPTED_STATUSES:
            raise ItemError(f"Observation.status must be one of {', '.join(ACCEPTED_STATUSES)}")
        code = _loinc(obs.get("code"), "Observation.code")
        at = _effective(obs)
        components_json = obs.get("component")
        if components_json:
            if not isinstance(components_json, list):
                raise ItemError("Observation.component must be an array")
            components = []
            for i, comp in enumerate(components_json):
                where = f"Observation.component[{i}]"
                if not isinstance(comp, dict):
                    raise ItemError(f"{where} must be an object")
                value, unit = _quantity(comp.get("valueQuantity"), f"{where}.valueQuantity")
                components.append((_loinc(comp.get("code"), f"{where}.code"), value, unit))
        else:
            value, unit = _quantity(obs.get("valueQuantity"), "Observation.valueQuantity")
            components = [(code, value, unit)]
    except ItemError as err:
        return rejected(index, FORMAT, obs, serial, err)
    if serial is not None and "device" not in obs:
        obs = {**obs, "device": {"identifier": {"value": serial}}}
    return Item(index, FORMAT, obs, serial, code, at, components)
