"""Payload parsers: compact JSON, FHIR R4 Observation/Bundle and Open mHealth, good and bad."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medloop.devices.payloads import PayloadError, parse
from medloop.devices.pipeline import normalise
from medloop.devices.types import Item, Reason, Rejected

AT = "2025-03-01T07:30:00+08:00"
AT_UTC = datetime(2025, 2, 28, 23, 30, tzinfo=UTC)


def only(doc: Any, serial: str | None = None) -> Item | Rejected:
    (entry,) = parse(doc, serial)
    return entry


def test_compact_batch() -> None:
    doc = {
        "device": "BP-1",
        "readings": [
            {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mmHg", "at": AT},
            {"code": "8867-4", "value": 71, "unit": "/min", "at": AT, "device": "OTHER"},
        ],
    }
    bp, hr = parse(doc)
    assert isinstance(bp, Item) and isinstance(hr, Item)
    assert bp.components == [("8480-6", 128.0, "mmHg"), ("8462-4", 82.0, "mmHg")]
    assert bp.device_serial == "BP-1" and bp.raw["device"] == "BP-1" and bp.effective_at == AT_UTC
    assert hr.device_serial == "OTHER" and hr.code == "8867-4"


@pytest.mark.parametrize(
    ("reading", "fragment"),
    [
        ({"type": "heart_rate", "value": "71", "unit": "/min", "at": AT}, "value must be a number"),
        ({"type": "heart_rate", "value": True, "unit": "/min", "at": AT}, "value must be a number"),
        ({"type": "heart_rate", "value": 71, "unit": "/min", "at": "2025-03-01T07:30:00"}, "UTC offset"),
        ({"type": "heart_rate", "value": 71, "unit": "/min", "at": "yesterday"}, "not an ISO 8601"),
        ({"type": "heart_rate", "value": 71, "at": AT}, "unit must be"),
        ({"value": 71, "unit": "/min", "at": AT}, "code or type"),
        ({"type": "blood_pressure", "systolic": 120, "unit": "mmHg", "at": AT}, "diastolic must be"),
        ("not an object", "JSON object"),
    ],
)
def test_compact_bad_reading(reading: Any, fragment: str) -> None:
    entry = only({"device": "BP-1", "readings": [reading]})
    assert isinstance(entry, Rejected) and entry.reason is Reason.MALFORMED
    assert fragment in entry.detail


@pytest.mark.parametrize(
    "doc", [{"readings": []}, {"readings": "x"}, 42, "text", [], {"device": 5, "readings": [{}]}]
)
def test_not_a_payload(doc: Any) -> None:
    with pytest.raises(PayloadError):
        parse(doc)


def fhir_bp(sbp: float = 128, dbp: float = 82, serial: str = "BP-1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": AT,
        "device": {"identifier": {"value": serial}},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {
                    "value": sbp,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {
                    "value": dbp,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
        ],
    }


def fhir_simple(code: str, value: float, unit: str, serial: str = "OX-1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": AT,
        "device": {"display": serial},
        "valueQuantity": {"value": value, "unit": unit},
    }


def test_fhir_bp_panel() -> None:
    entry = only(fhir_bp())
    assert isinstance(entry, Item) and entry.format == "fhir"
    assert entry.code == "85354-9" and entry.device_serial == "BP-1"
    assert entry.components == [("8480-6", 128.0, "mm[Hg]"), ("8462-4", 82.0, "mm[Hg]")]


def test_fhir_bundle_mixed() -> None:
    bad = fhir_simple("59408-5", 97, "%")
    del bad["effectiveDateTime"]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": fhir_bp()},
            {"resource": fhir_simple("59408-5", 97, "%")},
            {"resource": bad},
            {"resource": {"resourceType": "Patient"}},
        ],
    }
    entries = parse(bundle)
    assert [type(e).__name__ for e in entries] == ["Item", "Item", "Rejected", "Rejected"]
    assert isinstance(entries[2], Rejected) and "effectiveDateTime" in entries[2].detail


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "entered-in-error"}, Reason.MALFORMED),
        (
            {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]}},
            Reason.UNKNOWN_CODE,
        ),
        ({"valueQuantity": {"value": "97", "unit": "%"}}, Reason.MALFORMED),
        ({"valueQuantity": None}, Reason.MALFORMED),
    ],
)
def test_fhir_bad_observation(change: dict[str, Any], reason: Reason) -> None:
    entry = only({**fhir_simple("59408-5", 97, "%"), **change})
    assert isinstance(entry, Rejected) and entry.reason is reason


@pytest.mark.parametrize("bundle_type", ["collection", "searchset", None])
def test_fhir_bundle_type(bundle_type: str | None) -> None:
    with pytest.raises(PayloadError):
        parse({"resourceType": "Bundle", "type": bundle_type, "entry": [{"resource": fhir_bp()}]})


def omh(name: str, body: dict[str, Any], serial: str | None = "GLU-1") -> dict[str, Any]:
    header: dict[str, Any] = {"schema_id": {"namespace": "omh", "name": name, "version": "3.1"}}
    if serial:
        header["acquisition_provenance"] = {"source_name": serial}
    return {"header": header, "body": {**body, "effective_time_frame": {"date_time": AT}}}


@pytest.mark.parametrize(
    ("name", "body", "code", "components"),
    [
        (
            "blood-pressure",
            {
                "systolic_blood_pressure": {"value": 120, "unit": "mmHg"},
                "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"},
            },
            "85354-9",
            [("8480-6", 120.0, "mmHg"), ("8462-4", 80.0, "mmHg")],
        ),
        (
            "blood-glucose",
            {"blood_glucose": {"value": 110, "unit": "mg/dL"}},
            "14771-0",
            [("14771-0", 110.0, "mg/dL")],
        ),
        (
            "heart-rate",
            {"heart_rate": {"value": 64, "unit": "beats/min"}},
            "8867-4",
            [("8867-4", 64.0, "beats/min")],
        ),
        ("body-weight", {"body_weight": {"value": 150, "unit": "lb"}}, "29463-7", [("29463-7", 150.0, "lb")]),
    ],
)
def test_open_mhealth(name: str, body: dict[str, Any], code: str, components: list[Any]) -> None:
    entry = only(omh(name, body))
    assert isinstance(entry, Item) and entry.format == "omh"
    assert (entry.code, entry.components, entry.device_serial) == (code, components, "GLU-1")
    assert entry.effective_at == AT_UTC


def test_open_mhealth_string_schema_id_and_transport_serial() -> None:
    point = omh("heart-rate", {"heart_rate": {"value": 64, "unit": "beats/min"}}, serial=None)
    point["header"]["schema_id"] = "omh:heart-rate:2.0"
    entry = only(point, serial="HR-9")
    assert isinstance(entry, Item) and entry.device_serial == "HR-9"
    assert entry.raw["header"]["acquisition_provenance"]["device_serial"] == "HR-9"


def test_open_mhealth_unknown_schema() -> None:
    entry = only(omh("step-count", {"step_count": {"value": 100}}))
    assert isinstance(entry, Rejected) and entry.reason is Reason.UNKNOWN_CODE


def test_list_of_mixed_formats() -> None:
    entries = parse(
        [
            fhir_bp(),
            omh("heart-rate", {"heart_rate": {"value": 64, "unit": "beats/min"}}),
            {"type": "spo2", "value": 97, "unit": "%", "at": AT, "device": "OX-1"},
        ]
    )
    assert [e.format for e in entries] == ["fhir", "omh", "compact"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "device",
        "readings",
        "type",
        "code",
        "value",
        "unit",
        "at",
        "systolic",
        "diastolic",
        "resourceType",
        "status",
        "component",
        "valueQuantity",
        "header",
        "body",
        "entry",
    ]
)
SHAPED = st.dictionaries(KEYS, JSON, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        JSON, SHAPED, st.lists(SHAPED, max_size=4), st.builds(lambda r: {"readings": r}, st.lists(SHAPED))
    )
)
def test_any_json_parses_or_is_refused_cleanly(doc: Any) -> None:
    """The parsers never raise anything but PayloadError, whatever JSON arrives; nor does normalise."""
    try:
        entries = parse(doc)
    except PayloadError:
        return
    assert all(isinstance(e, Item | Rejected) for e in entries)
    for entry in entries:
        if isinstance(entry, Item):
            normalise(entry)
