"""Unit conversion between UCUM units, computed by pint (a maintained units library).

Devices send unit spellings that are not UCUM (`mmHg`, `bpm`, `lb`, `°F`): `ucum()` maps them to
the UCUM code. A conversion is computed once per (from, to) pair and cached as an affine function
(scale and offset), so converting a reading costs a multiplication, not a pint call.

pint cannot convert mass to substance concentration (mg/dL to mmol/L): that needs the molar mass of
the substance, which is data (`mg_dl_per_mmol_l` in codes.yaml), passed in as `mg_dl_per_mmol_l`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import pint

from medloop.clinical.codes import codebook

MASS_CONCENTRATION = "mg/dL"
SUBSTANCE_CONCENTRATION = "mmol/L"


class UnitError(ValueError):
    """An unknown unit, or a conversion between units of different kinds."""


@dataclass(frozen=True)
class Affine:
    """value_in_target = value * scale + offset"""

    scale: float
    offset: float = 0.0

    def __call__(self, value: float) -> float:
        return value * self.scale + self.offset


@cache
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


@cache
def _spellings() -> dict[str, str]:
    """Every accepted spelling (exact, then lower-case) -> UCUM code."""
    table: dict[str, str] = {}
    for code, spec in codebook().units.items():
        for spelling in (code, *spec.get("aliases", ())):
            table.setdefault(spelling, code)
            table.setdefault(spelling.lower(), code)
    return table


def ucum(unit: str) -> str:
    """The UCUM code for a unit spelling (`mmHg` -> `mm[Hg]`); UnitError if unknown."""
    spellings = _spellings()
    key = unit.strip()
    found = spellings.get(key) or spellings.get(key.lower())
    if found is None:
        raise UnitError(f"unknown unit {unit!r}")
    return found


def _pint_unit(code: str) -> pint.Unit:
    return _registry().Unit(codebook().units[code]["pint"])


@cache
def _physical(from_code: str, to_code: str) -> Affine:
    reg = _registry()
    src, dst = _pint_unit(from_code), _pint_unit(to_code)
    try:
        zero = float(reg.Quantity(0.0, src).to(dst).magnitude)
        one = float(reg.Quantity(1.0, src).to(dst).magnitude)
    except pint.DimensionalityError as exc:
        raise UnitError(f"cannot convert {from_code} to {to_code}") from exc
    return Affine(one - zero, zero)


@cache
def converter(from_unit: str, to_unit: str, mg_dl_per_mmol_l: float | None = None) -> Affine:
    """The conversion from one unit to another (any accepted spelling), as an affine function.

    With `mg_dl_per_mmol_l`, mass concentrations convert to substance concentrations and back."""
    src, dst = ucum(from_unit), ucum(to_unit)
    if src == dst:
        return Affine(1.0)
    try:
        return _physical(src, dst)
    except UnitError:
        if mg_dl_per_mmol_l is None:
            raise
    # Mass <-> substance concentration: go through mg/dL and mmol/L, where the factor applies.
    mass, substance = MASS_CONCENTRATION, SUBSTANCE_CONCENTRATION
    try:
        first, last = _physical(src, mass), _physical(substance, dst)
        factor = 1.0 / mg_dl_per_mmol_l
    except UnitError:
        try:
            first, last = _physical(src, substance), _physical(mass, dst)
        except UnitError:
            raise UnitError(f"cannot convert {src} to {dst}") from None
        factor = mg_dl_per_mmol_l
    return Affine(first.scale * factor * last.scale, first.offset * factor * last.scale + last.offset)


def convert(value: float, from_unit: str, to_unit: str, *, mg_dl_per_mmol_l: float | None = None) -> float:
    """Convert `value` between units; UnitError for unknown units or incompatible kinds."""
    if not math.isfinite(value):
        raise UnitError("value is not a finite number")
    return converter(from_unit, to_unit, mg_dl_per_mmol_l)(value)
