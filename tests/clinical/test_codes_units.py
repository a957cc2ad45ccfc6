"""LOINC codes and UCUM units: table-driven checks of the code book and of every conversion."""

from __future__ import annotations

import pytest

from medloop.clinical import codes, units
from medloop.clinical.codes import UnknownCode, measure
from medloop.clinical.units import UnitError, convert, ucum

# (name or alias, canonical LOINC, canonical UCUM) — REFERENCE.md section 9.
CODES = [
    ("bp_panel", "85354-9", None),
    ("systolic_bp", "8480-6", "mm[Hg]"),
    ("diastolic_bp", "8462-4", "mm[Hg]"),
    ("heart_rate", "8867-4", "/min"),
    ("spo2", "59408-5", "%"),
    ("2708-6", "59408-5", "%"),
    ("body_weight", "29463-7", "kg"),
    ("body_height", "8302-2", "cm"),
    ("bmi", "39156-5", "kg/m2"),
    ("waist", "8280-0", "cm"),
    ("glucose", "14771-0", "mmol/L"),
    ("1558-6", "14771-0", "mmol/L"),
    ("hba1c", "4548-4", "%"),
    ("fev1", "20150-9", "L"),
    ("fvc", "19868-9", "L"),
    ("fev1_fvc", "19926-5", "%"),
    ("body_temperature", "8310-5", "Cel"),
]


@pytest.mark.parametrize(("key", "loinc", "unit"), CODES)
def test_code_book(key: str, loinc: str, unit: str | None) -> None:
    found = measure(key)
    assert (found.loinc, found.unit) == (loinc, unit)


def test_diastolic_is_8462_4_not_heart_rate() -> None:
    assert codes.DIASTOLIC_BP == "8462-4" == measure("diastolic").loinc
    assert measure("8867-4").name == "heart_rate"
    assert measure("bp_panel").components == ("8480-6", "8462-4")


@pytest.mark.parametrize("key", ["8867-5", "blood_sugar_level", ""])
def test_unknown_code(key: str) -> None:
    with pytest.raises(UnknownCode):
        measure(key)


@pytest.mark.parametrize(
    ("spelling", "code"),
    [
        ("mmHg", "mm[Hg]"),
        ("mm[Hg]", "mm[Hg]"),
        ("bpm", "/min"),
        ("beats/min", "/min"),
        ("lb", "[lb_av]"),
        ("°F", "[degF]"),
        ("°C", "Cel"),
        ("mg/dl", "mg/dL"),
        ("mmol/l", "mmol/L"),
        ("%", "%"),
        ("in", "[in_i]"),
    ],
)
def test_unit_spellings(spelling: str, code: str) -> None:
    assert ucum(spelling) == code


# (value, from, to, expected, tolerance); glucose uses the molar factor from the code book.
CONVERSIONS = [
    (1.0, "kPa", "mm[Hg]", 7.50062, 1e-5),
    (16.0, "kPa", "mm[Hg]", 120.00985, 1e-4),
    (120.0, "mm[Hg]", "kPa", 15.99868, 1e-4),
    (150.0, "[lb_av]", "kg", 68.0388555, 1e-6),
    (70.0, "[in_i]", "cm", 177.8, 1e-9),
    (98.6, "[degF]", "Cel", 37.0, 1e-6),
    (32.0, "[degF]", "Cel", 0.0, 1e-9),
    (2500.0, "mL", "L", 2.5, 1e-12),
    (1.0, "g", "kg", 0.001, 1e-12),
    (1.75, "m", "cm", 175.0, 1e-9),
    (72.0, "/min", "/min", 72.0, 0.0),
]


@pytest.mark.parametrize(("value", "src", "dst", "expected", "tol"), CONVERSIONS)
def test_conversions(value: float, src: str, dst: str, expected: float, tol: float) -> None:
    assert convert(value, src, dst) == pytest.approx(expected, abs=tol)


GLUCOSE = measure("glucose").mg_dl_per_mmol_l


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (18.016, "mg/dL", "mmol/L", 1.0),
        (100.0, "mg/dL", "mmol/L", 5.5506),
        (5.5, "mmol/L", "mg/dL", 99.088),
        (70.0, "mg/dL", "mmol/L", 3.8855),
        (1.0, "mmol/L", "mmol/L", 1.0),
    ],
)
def test_glucose_molar_conversion(value: float, src: str, dst: str, expected: float) -> None:
    assert GLUCOSE == 18.016
    assert convert(value, src, dst, mg_dl_per_mmol_l=GLUCOSE) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("src", "dst", "factor"),
    [("mg/dL", "mmol/L", None), ("kg", "mm[Hg]", None), ("Cel", "kg", 18.0), ("%", "mm[Hg]", None)],
)
def test_incompatible_units_are_refused(src: str, dst: str, factor: float | None) -> None:
    with pytest.raises(UnitError):
        convert(1.0, src, dst, mg_dl_per_mmol_l=factor)


@pytest.mark.parametrize("spelling", ["furlongs", "mmHgg", "mg"])
def test_unknown_unit(spelling: str) -> None:
    with pytest.raises(UnitError):
        ucum(spelling)


def test_non_finite_value_refused() -> None:
    with pytest.raises(UnitError):
        convert(float("nan"), "kPa", "mm[Hg]")


def test_every_canonical_unit_is_known() -> None:
    for m in codes.codebook().measures.values():
        if m.unit is not None:
            assert units.ucum(m.unit) == m.unit
