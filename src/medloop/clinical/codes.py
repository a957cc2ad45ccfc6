"""LOINC codes and canonical UCUM units of the measures medloop stores (data: data/codes.yaml).

Every reading is stored under the canonical code and unit of its measure. Lookups accept the
canonical LOINC code, the other LOINC codes listed under `also`, the measure's name and its aliases.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

BP_PANEL = "85354-9"
SYSTOLIC_BP = "8480-6"
DIASTOLIC_BP = "8462-4"
HEART_RATE = "8867-4"
SPO2 = "59408-5"
SPO2_ARTERIAL = "2708-6"
BODY_WEIGHT = "29463-7"
BODY_HEIGHT = "8302-2"
BMI = "39156-5"
WAIST = "8280-0"
GLUCOSE_MOLAR = "14771-0"
GLUCOSE_MASS = "1558-6"
HBA1C = "4548-4"
FEV1 = "20150-9"
FVC = "19868-9"
FEV1_FVC = "19926-5"
BODY_TEMPERATURE = "8310-5"

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"


class UnknownCode(LookupError):
    """A code or measure name that medloop does not know."""


@dataclass(frozen=True)
class Measure:
    name: str
    loinc: str
    display: str
    unit: str | None  # canonical UCUM unit; None for panels
    components: tuple[str, ...] = ()  # LOINC codes of a panel's components
    also: tuple[str, ...] = ()  # other LOINC codes accepted for this measure
    mg_dl_per_mmol_l: float | None = None  # molar conversion factor, for substances that have one

    @property
    def is_panel(self) -> bool:
        return bool(self.components)


@dataclass(frozen=True)
class CodeBook:
    measures: dict[str, Measure]  # by canonical LOINC code
    by_key: dict[str, Measure]  # by any accepted LOINC code, name or alias (lower case)
    units: dict[str, dict[str, Any]]  # UCUM code -> {pint, aliases}

    def measure(self, code_or_name: str) -> Measure:
        found = self.by_key.get(code_or_name.strip().lower())
        if found is None:
            raise UnknownCode(f"unknown measure code or name {code_or_name!r}")
        return found


def load_data(name: str) -> dict[str, Any]:
    """A YAML data file from medloop/clinical/data."""
    text = resources.files("medloop.clinical").joinpath("data", name).read_text(encoding="utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@cache
def codebook() -> CodeBook:
    doc = load_data("codes.yaml")
    names = {name: str(spec["loinc"]) for name, spec in doc["measures"].items()}
    measures: dict[str, Measure] = {}
    by_key: dict[str, Measure] = {}
    for name, spec in doc["measures"].items():
        measure = Measure(
            name=name,
            loinc=str(spec["loinc"]),
            display=str(spec["display"]),
            unit=spec.get("unit"),
            components=tuple(names[c] for c in spec.get("components", ())),
            also=tuple(str(c) for c in spec.get("also", ())),
            mg_dl_per_mmol_l=spec.get("mg_dl_per_mmol_l"),
        )
        measures[measure.loinc] = measure
        for key in (measure.loinc, *measure.also, name, *spec.get("aliases", ())):
            if key.lower() in by_key:
                raise ValueError(f"codes.yaml: {key!r} is used by two measures")
            by_key[key.lower()] = measure
    return CodeBook(measures, by_key, dict(doc["units"]))


def measure(code_or_name: str) -> Measure:
    """The measure for a LOINC code (canonical or accepted), a measure name or an alias."""
    return codebook().measure(code_or_name)


def canonical_code(code_or_name: str) -> str:
    return measure(code_or_name).loinc
