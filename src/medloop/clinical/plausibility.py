"""Plausibility of measured values (data: data/plausibility.yaml).

Values are checked in the canonical unit of their code (after normalisation). A failed check
returns a reason; a passed one returns None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from medloop.clinical.codes import load_data


@dataclass(frozen=True)
class Range:
    code: str
    min: float
    max: float
    unit: str
    source: str
    confirmed: bool


@dataclass(frozen=True)
class Relation:
    greater: str
    lesser: str
    reason: str


@dataclass(frozen=True)
class Rules:
    ranges: dict[str, Range]
    relations: tuple[Relation, ...]


@cache
def rules() -> Rules:
    doc = load_data("plausibility.yaml")
    ranges = {
        str(code): Range(
            str(code),
            float(r["min"]),
            float(r["max"]),
            str(r["unit"]),
            str(r["source"]),
            bool(r["confirmed"]),
        )
        for code, r in doc["ranges"].items()
    }
    relations = tuple(
        Relation(str(r["greater"]), str(r["lesser"]), str(r["reason"])) for r in doc["relations"]
    )
    return Rules(ranges, relations)


def check_value(code: str, value: float) -> str | None:
    """Why `value` (canonical unit of `code`) is implausible, or None if it is plausible."""
    if not math.isfinite(value):
        return "value is not a finite number"
    if value < 0:
        return f"{code} value {value:g} is negative"
    rng = rules().ranges.get(code)
    if rng is not None and not rng.min <= value <= rng.max:
        return f"{code} value {value:g} {rng.unit} outside plausible range {rng.min:g}–{rng.max:g}"
    return None


def check_panel(values: Mapping[str, float]) -> str | None:
    """Why the components of one panel (code -> canonical value) are implausible together, or None."""
    for code, value in values.items():
        reason = check_value(code, value)
        if reason:
            return reason
    for rel in rules().relations:
        if rel.greater in values and rel.lesser in values and not values[rel.greater] > values[rel.lesser]:
            return rel.reason
    return None
