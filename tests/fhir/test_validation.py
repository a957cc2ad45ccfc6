"""The fast path of FHIR validation (`validation.conforms`) never accepts what `fhir.resources`
refuses: checked on every element of realistic Observations, each replaced by odd values, removed,
wrapped or joined by an unknown sibling. What the fast path does not take goes to the library, so
errors are answered as before."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from medloop.fhir.common import Invalid
from medloop.fhir.validation import conforms, model_class, validate
from tests.fhir.conftest import LOINC, UCUM, VITALS, bp, spo2

EXPORTED = {
    "resourceType": "Observation",
    "id": "4f1c2b8e-0d7a-4c55-9a53-3f1f0a6f2b10",
    "meta": {
        "versionId": "1",
        "lastUpdated": "2024-03-01T08:00:01.250Z",
        "profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"],
    },
    "status": "final",
    "category": [VITALS],
    "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
    "subject": {"reference": "Patient/1d6f3c0e-5b7a-4e0e-9c55-2b1f0a6f2b11"},
    "effectiveDateTime": "2024-03-01T08:00:00Z",
    "issued": "2024-03-01T08:00:01.250Z",
    "device": {
        "reference": "Device/8a1c2b8e-0d7a-4c55-9a53-3f1f0a6f2b12",
        "identifier": {"system": "https://medloop.dev/fhir/sid/device-serial", "value": "HR-7"},
        "display": "HR-7",
    },
    "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
}
BASES = [bp("BP-1", 121, 79, 50), bp("BP-1", 121.5, 79.25, 5), spo2("OX-1", 95, 48), EXPORTED]
ODD: list[Any] = [
    None, "", " ", "\t", "x ", " x", "a  b", "a b", "ü", "中文", "\x1c", "mm[Hg]", "final", "unknown",
    "<", "usual", "http://x y", "a.b-C", "x" * 65, "130", 0, -0.0, 1.5, 10**30, 1e300,
    float("inf"), float("nan"), True, False, [], {}, {"x": 1}, ["x"], [{}],
    "2024-02-30T10:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T10:00:00", "2024-01-01",
    "2024-01-01T10:00:60Z", "2024-01-01T10:00:00.1234567Z", "0000-01-01T00:00:00Z",
    "2024-01-01T10:00:00+14:01", "2024-01-01T10:00:00+15:00", "2024-01-01T10:00:00-13:59",
    "2024-01-01T10:00:00.5+05:30",
]  # fmt: skip


def paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*here, key)
            yield from paths(item, (*here, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*here, i)
            yield from paths(item, (*here, i))


def mutations(base: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in paths(base):
        parent_path, last = path[:-1], path[-1]
        for change in [*ODD, "wrap", "unwrap", "delete", "sibling"]:
            doc = copy.deepcopy(base)
            parent: Any = doc
            for step in parent_path:
                parent = parent[step]
            current = parent[last]
            if change == "wrap":
                parent[last] = [current]
            elif change == "unwrap":
                if not isinstance(current, list) or not current:
                    continue
                parent[last] = current[0]
            elif change == "delete":
                del parent[last]
            elif change == "sibling":
                if not isinstance(parent, dict):
                    continue
                parent["extension"] = [{"url": "http://example.org/x", "valueString": "x"}]
            else:
                parent[last] = change
            yield doc


def library_accepts(resource: dict[str, Any]) -> bool:
    try:
        model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return False
    return True


def test_common_shapes_take_the_fast_path() -> None:
    for base in BASES:
        assert conforms(base), base
        assert library_accepts(base)


@pytest.mark.parametrize("base", BASES, ids=["bp", "bp-decimal", "spo2", "exported"])
def test_fast_path_accepts_nothing_the_library_refuses(base: dict[str, Any]) -> None:
    fast = slow = 0
    for doc in mutations(base):
        if conforms(doc):
            fast += 1
            assert library_accepts(doc), doc
        else:
            slow += 1
    assert fast > 20 and slow > 200  # both ways are exercised


def test_errors_come_from_the_library() -> None:
    doc = bp("BP-1", 121, 79, 50)
    doc["status"] = "done well"
    doc["component"][0]["valueQuantity"]["value"] = "high"
    with pytest.raises(Invalid) as raised:
        validate(doc, "Observation")
    assert {e["loc"] for e in raised.value.errors} >= {"Observation.component.0.valueQuantity.value"}
