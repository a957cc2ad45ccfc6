"""Open mHealth data points: blood-pressure, blood-glucose, heart-rate and body-weight.

    {"header": {"schema_id": {"namespace": "omh", "name": "blood-pressure", "version": "3.1"},
                "acquisition_provenance": {"source_name": "BP-0001"}},
     "body": {"systolic_blood_pressure": {"value": 128, "unit": "mmHg"},
              "diastolic_blood_pressure": {"value": 82, "unit": "mmHg"},
              "effective_time_frame": {"date_time": "2025-03-01T07:30:00+08:00"}}}

The schema is named by `header.schema_id` (an object, or the string "omh:blood-pressure:3.1").
The device serial is `header.acquisition_provenance.device_serial`, else `source_name`, else the
transport's device (the MQTT topic, a device token).
"""

from __future__ import annotations

from typing import Any

from medloop.clinical.codes import BODY_WEIGHT, BP_PANEL, DIASTOLIC_BP, GLUCOSE_MOLAR, HEART_RATE, SYSTOLIC_BP
from medloop.devices.payloads.common import ItemError, instant, number, rejected, text
from medloop.devices.types import Item, Reason, Rejected

FORMAT = "omh"

# schema name -> (reading code, [(component code, body property)])
SCHEMAS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "blood-pressure": (
        BP_PANEL,
        [(SYSTOLIC_BP, "systolic_blood_pressure"), (DIASTOLIC_BP, "diastolic_blood_pressure")],
    ),
    "blood-glucose": (GLUCOSE_MOLAR, [(GLUCOSE_MOLAR, "blood_glucose")]),
    "heart-rate": (HEART_RATE, [(HEART_RATE, "heart_rate")]),
    "body-weight": (BODY_WEIGHT, [(BODY_WEIGHT, "body_weight")]),
}


def _schema_name(schema_id: Any) -> str:
    if isinstance(schema_id, str):
        parts = schema_id.split(":")
        name = parts[1] if len(parts) >= 2 else parts[0]
    elif isinstance(schema_id, dict):
        name = text(schema_id.get("name"), "header.schema_id.name")
    else:
        raise ItemError("header.schema_id is required")
    if name not in SCHEMAS:
        raise ItemError(
            f"unsupported Open mHealth schema {name!r}; supported: {', '.join(SCHEMAS)}", Reason.UNKNOWN_CODE
        )
    return name


def _serial(header: Any, default_serial: str | None) -> str | None:
    prov = header.get("acquisition_provenance") if isinstance(header, dict) else None
    if isinstance(prov, dict):
        for key in ("device_serial", "source_name"):
            if isinstance(prov.get(key), str):
                return str(prov[key])
    return default_serial


def _effective(body: dict[str, Any]) -> Any:
    frame = body.get("effective_time_frame")
    if isinstance(frame, dict):
        if "date_time" in frame:
            return instant(frame["date_time"], "effective_time_frame.date_time")
        interval = frame.get("time_interval")
        if isinstance(interval, dict) and "start_date_time" in interval:
            return instant(interval["start_date_time"], "effective_time_frame.time_interval.start_date_time")
    raise ItemError("body.effective_time_frame.date_time is required")


def parse_datapoint(point: Any, index: int, default_serial: str | None) -> Item | Rejected:
    header = point.get("header") if isinstance(point, dict) else None
    serial = _serial(header, default_serial)
    raw = point
    try:
        if not isinstance(header, dict) or not isinstance(point.get("body"), dict):
            raise ItemError("an Open mHealth data point needs 'header' and 'body' objects")
        code, fields = SCHEMAS[_schema_name(header.get("schema_id"))]
        body = point["body"]
        components = []
        for comp_code, prop in fields:
            qty = body.get(prop)
            if not isinstance(qty, dict):
                raise ItemError(f"body.{prop} must be an object with value and unit")
            components.append(
                (
                    comp_code,
                    number(qty.get("value"), f"body.{prop}.value"),
                    text(qty.get("unit"), f"body.{prop}.unit"),
                )
            )
        at = _effective(body)
    except ItemError as err:
        return rejected(index, FORMAT, raw, serial, err)
    if serial is not None and serial != _serial(header, None):
        prov = {**header.get("acquisition_provenance", {}), "device_serial": serial}
        raw = {**point, "header": {**header, "acquisition_provenance": prov}}
    return Item(index, FORMAT, raw, serial, code, at, components)
