"""DHIS2 export: one month's KPI values as a DHIS2 `dataValueSets` document, through a mapping
(dhis2.yaml, or a file of the same shape) from programme/indicator to data element and from
medloop unit to DHIS2 organisation unit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.programs.models import KpiValue

MAPPING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["levels", "data_elements"],
    "properties": {
        "data_set": {"type": ["string", "null"]},
        "levels": {"type": "array", "items": {"enum": ["facility", "district", "region"]}, "minItems": 1},
        "unmapped": {"enum": ["keep_code", "skip"]},
        "org_units": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                lvl: {"type": "object", "additionalProperties": {"type": "string"}}
                for lvl in ("facility", "district", "region")
            },
        },
        "data_elements": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["programme", "indicator", "data_element"],
                "properties": {
                    "programme": {"type": "string"},
                    "indicator": {"type": "string"},
                    "field": {"enum": ["value", "numerator", "denominator"]},
                    "data_element": {"type": "string", "minLength": 1},
                    "category_option_combo": {"type": "string"},
                    "scale": {"type": "number"},
                    "decimals": {"type": "integer", "minimum": 0, "maximum": 6},
                },
            },
        },
    },
}


class MappingError(ValueError):
    pass


def load_mapping(path: Path | None = None) -> dict[str, Any]:
    if path is None:
        text = resources.files("medloop.programs").joinpath("dhis2.yaml").read_text("utf-8")
        name = "dhis2.yaml"
    else:
        text, name = path.read_text(encoding="utf-8"), str(path)
    doc = yaml.safe_load(text)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(MAPPING_SCHEMA).iter_errors(doc))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise MappingError(f"{name}: {where}: {error.message}")
    mapping: dict[str, Any] = doc
    return mapping


@dataclass(frozen=True)
class Export:
    document: dict[str, Any]
    values: int
    skipped_units: int  # values left out because their unit has no DHIS2 org unit (unmapped: skip)


def _format(number: float, scale: float, decimals: int | None) -> str:
    scaled = number * scale
    if decimals is not None:
        scaled = round(scaled, decimals)
    return str(int(scaled)) if float(scaled).is_integer() else repr(float(scaled))


def data_value_set(session: Session, period: date, mapping: Mapping[str, Any]) -> Export:
    """The dataValueSets document for a month (DHIS2 monthly period: YYYYMM)."""
    elements: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for e in mapping["data_elements"]:
        elements.setdefault((e["programme"], e["indicator"]), []).append(e)
    dhis2_period = f"{period.year:04d}{period.month:02d}"
    levels = list(mapping["levels"])
    units: Mapping[str, Mapping[str, str]] = mapping.get("org_units", {})
    skip = mapping.get("unmapped", "keep_code") == "skip"
    rows = session.scalars(
        select(KpiValue)
        .where(KpiValue.period == period, KpiValue.level.in_(levels))
        .order_by(KpiValue.level, KpiValue.unit, KpiValue.programme, KpiValue.indicator)
    )
    values: list[dict[str, str]] = []
    skipped = 0
    for kpi in rows:
        for element in elements.get((kpi.programme, kpi.indicator), ()):
            number = getattr(kpi, element.get("field", "value"))
            if number is None:
                continue
            org_unit = units.get(kpi.level, {}).get(kpi.unit)
            if org_unit is None:
                if skip:
                    skipped += 1
                    continue
                org_unit = kpi.unit
            value = {
                "dataElement": element["data_element"],
                "period": dhis2_period,
                "orgUnit": org_unit,
                "value": _format(number, float(element.get("scale", 1)), element.get("decimals")),
            }
            if element.get("category_option_combo"):
                value["categoryOptionCombo"] = element["category_option_combo"]
            values.append(value)
    document: dict[str, Any] = {"dataValues": values}
    if mapping.get("data_set"):
        document = {"dataSet": mapping["data_set"], "period": dhis2_period, **document}
    return Export(document, len(values), skipped)
