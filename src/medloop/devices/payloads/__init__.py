"""Payload parsers: medloop compact JSON, FHIR R4 Observation/Bundle, Open mHealth data points.

`parse` recognises the format of a decoded JSON document and returns one `Item` (or `Rejected`)
per reading, in order. A document that is not any known format raises `PayloadError`; a bad reading
inside a good document is a `Rejected` entry and never affects its neighbours.
"""

from __future__ import annotations

from typing import Any

from medloop.devices.payloads import compact, fhir, omh
from medloop.devices.payloads.common import PayloadError
from medloop.devices.types import Item, Rejected

__all__ = ["FORMATS", "PayloadError", "parse", "parse_entry"]

FORMATS = (compact.FORMAT, fhir.FORMAT, omh.FORMAT)


def detect(entry: dict[str, Any]) -> str:
    if "resourceType" in entry:
        return fhir.FORMAT
    if "header" in entry and "body" in entry:
        return omh.FORMAT
    return compact.FORMAT


def parse_entry(
    entry: Any, index: int, default_serial: str | None, fmt: str | None = None
) -> Item | Rejected:
    """One reading in any format (detected unless `fmt` is given)."""
    fmt = fmt or (detect(entry) if isinstance(entry, dict) else compact.FORMAT)
    if fmt == fhir.FORMAT:
        return fhir.parse_observation(entry, index, default_serial)
    if fmt == omh.FORMAT:
        return omh.parse_datapoint(entry, index, default_serial)
    return compact.parse_reading(entry, index, default_serial)


def parse(doc: Any, default_serial: str | None = None) -> list[Item | Rejected]:
    """Every reading in a decoded JSON document. `default_serial` is the device the transport
    vouches for (the MQTT topic, a device's own token), used where the payload names none."""
    if isinstance(doc, list):
        if not doc:
            raise PayloadError("the payload is an empty list")
        return [parse_entry(entry, i, default_serial) for i, entry in enumerate(doc)]
    if not isinstance(doc, dict):
        raise PayloadError("the payload must be a JSON object or array")
    if doc.get("resourceType") == "Bundle":
        return fhir.parse_bundle(doc, default_serial)
    if "readings" in doc:
        return compact.parse_batch(doc, default_serial)
    return [parse_entry(doc, 0, default_serial)]
