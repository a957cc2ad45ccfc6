"""The published JSON Schema of the compact format agrees with the parser."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from medloop.devices.payloads import parse
from medloop.devices.types import Item

SCHEMA = json.loads(
    resources.files("medloop.devices")
    .joinpath("schemas", "compact-batch.schema.json")
    .read_text(encoding="utf-8")
)
AT = "2025-03-01T07:30:00+08:00"

VALID = [
    {
        "device": "BP-1",
        "readings": [
            {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mmHg", "at": AT},
            {"code": "8867-4", "value": 71, "unit": "/min", "at": AT},
        ],
    },
    {"device": "GLU-1", "type": "glucose", "value": 6.1, "unit": "mmol/L", "at": "2025-03-01T00:00:00Z"},
]
INVALID = [
    {"readings": []},
    {"device": 5, "readings": [{"type": "heart_rate", "value": 70, "unit": "/min", "at": AT}]},
    {"type": "heart_rate", "value": "70", "unit": "/min", "at": AT},
    {"type": "heart_rate", "value": 70, "unit": "/min", "at": "2025-03-01T07:30:00"},
    {"type": "blood_pressure", "systolic": 120, "unit": "mmHg", "at": AT},
    {"value": 70, "unit": "/min", "at": AT},
]


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("doc", VALID)
def test_valid_examples(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, SCHEMA)
    assert all(isinstance(e, Item) for e in parse(doc))


@pytest.mark.parametrize("doc", INVALID)
def test_invalid_examples_are_refused_by_both(doc: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
    try:
        entries = parse(doc)
    except ValueError:
        return
    assert not all(isinstance(e, Item) for e in entries)
