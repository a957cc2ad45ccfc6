"""medloop compact JSON (schema: devices/schemas/compact-batch.schema.json).

    {"device": "BP-0001",                                  # default for the readings below
     "readings": [
       {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mmHg",
        "at": "2025-03-01T07:30:00+08:00"},
       {"code": "8867-4", "value": 71, "unit": "/min", "at": "2025-03-01T07:30:00+08:00"}]}

A reading names its measure by LOINC `code` or by `type` (a measure name or alias from
clinical/data/codes.yaml). A single reading object (without "readings") is also accepted.
"""

from __future__ import annotations

from typing import Any

from medloop.clinical.codes import BP_PANEL, DIASTOLIC_BP, SYSTOLIC_BP
from medloop.devices.payloads.common import ItemError, PayloadError, instant, number, rejected, text
from medloop.devices.types import Item, Rejected

FORMAT = "compact"
MAX_SERIAL = 80


def parse_batch(doc: dict[str, Any], default_serial: str | None) -> list[Item | Rejected]:
    readings = doc.get("readings")
    if not isinstance(readings, list) or not readings:
        raise PayloadError("'readings' must be a non-empty array")
    serial = doc.get("device", default_serial)
    if serial is not None and not isinstance(serial, str):
        raise PayloadError("'device' must be a string (the device serial)")
    return [parse_reading(r, i, serial) for i, r in enumerate(readings)]


def parse_reading(obj: Any, index: int, default_serial: str | None) -> Item | Rejected:
    serial = obj.get("device", default_serial) if isinstance(obj, dict) else default_serial
    raw = {**obj, "device": serial} if isinstance(obj, dict) and "device" not in obj and serial else obj
    try:
        if not isinstance(obj, dict):
            raise ItemError("a reading must be a JSON object")
        serial = text(serial, "device") if serial is not None else None
        if serial is not None and len(serial) > MAX_SERIAL:
            raise ItemError(f"device serial longer than {MAX_SERIAL} characters")
        unit = text(obj.get("unit"), "unit")
        at = instant(obj.get("at"), "at")
        if "systolic" in obj or "diastolic" in obj:
            code = text(obj.get("code") or obj.get("type") or BP_PANEL, "type")
            components = [
                (SYSTOLIC_BP, number(obj.get("systolic"), "systolic"), unit),
                (DIASTOLIC_BP, number(obj.get("diastolic"), "diastolic"), unit),
            ]
        else:
            code = text(obj.get("code") or obj.get("type"), "code or type")
            components = [(code, number(obj.get("value"), "value"), unit)]
    except ItemError as err:
        return rejected(index, FORMAT, raw, serial if isinstance(serial, str) else None, err)
    return Item(index, FORMAT, raw, serial, code, at, components)
