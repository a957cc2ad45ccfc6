"""Validation of incoming resources against the FHIR structure definitions, using the model
classes of `fhir.resources`.

Version: the package (8.x) ships R5 as its default and R4B (4.3.0) in `fhir.resources.R4B`; there
are no R4 (4.0.1) classes. R4B is R4 plus corrections and a few new resources; for the resources
medloop serves (Patient, Observation, Condition, ...) R4B and R4 agree, so R4B is the closest
available and what we validate with. What medloop serves is plain R4 JSON.

Fast path: building the model classes costs ~0.5 ms per Observation, more than everything else
medloop does with a reading. Observations in the shape devices and FHIR clients send (and medloop
exports) are recognised by `conforms`, a walk over a small table of element types whose checks are
each narrower than the library's (ASCII codes, full-precision date-times, non-empty elements), so
that whatever it accepts the library accepts too. Anything else (an element it does not know, an
unusual value) goes through the library, so an invalid resource is answered exactly as before.
`tests/fhir/test_validation.py` checks the "narrower" claim on mutations of every element.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache, lru_cache, partial
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from medloop.errors import error_summary
from medloop.fhir.common import Invalid

MAX_ISSUES = 20


@cache
def model_class(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def validate(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """The resource if it is a valid FHIR resource (of `expected_type`), else `Invalid` (400)
    with one issue per problem, each with its FHIRPath-like location."""
    if not isinstance(resource, dict):
        raise Invalid("the body must be a JSON object holding a FHIR resource")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise Invalid("the resource has no resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise Invalid(f"resourceType is {resource_type!r}, but this endpoint takes {expected_type}")
    if conforms(resource):
        return resource
    try:
        cls = model_class(resource_type)
    except (ValueError, KeyError):
        raise Invalid(f"{resource_type!r} is not a FHIR resource type") from None
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        errors = [
            {
                "loc": ".".join([resource_type, *(str(p) for p in e["loc"])]),
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()[:MAX_ISSUES]
        ]
        summary = error_summary(errors, 3)
        raise Invalid(f"{resource_type} failed FHIR validation: {summary}", errors=errors) from None
    return resource


# --- the fast path ------------------------------------------------------------------------------

_ASCII_CODE = re.compile(r"[!-~]+(?: [!-~]+)*")  # FHIR code: tokens separated by single spaces
_ASCII_URI = re.compile(r"[!-~]+")  # FHIR uri/canonical: no whitespace
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # the FHIR decimal regex
# A date-time to the second (at most microseconds) with a zone: a valid FHIR dateTime and instant
# (hours 00-23, minutes and seconds 00-59, zone within -13:59..+14:00; the date is checked below).
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
MAX_STRING = 10_000


@lru_cache(maxsize=4096)
def _text(kind: str, value: str) -> bool:
    """The checks of the string-valued types (their values repeat: systems, codes, units)."""
    if kind == "string":
        return len(value) <= MAX_STRING and bool(value.strip())
    if kind == "code":
        return _ASCII_CODE.fullmatch(value) is not None
    if kind == "uri":
        return len(value) <= MAX_STRING and _ASCII_URI.fullmatch(value) is not None
    if kind == "id":
        return _ID.fullmatch(value) is not None
    raise ValueError(kind)


def _date_time(value: Any) -> bool:
    """Not cached: date-times rarely repeat."""
    if type(value) is not str or _DATE_TIME.fullmatch(value) is None or value.startswith("0000"):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # a real calendar date
    except ValueError:
        return False
    return True


def _decimal(value: Any) -> bool:
    if type(value) is int:  # str() of an int always matches the FHIR decimal regex
        return True
    return type(value) is float and math.isfinite(value) and _DECIMAL.fullmatch(str(value)) is not None


def _boolean(value: Any) -> bool:
    return value is True or value is False


TEXT_TYPES = ("string", "code", "uri", "id")
# Element -> (type, is an array), per complex type; only the elements of the common shape.
SHAPES: dict[str, dict[str, tuple[str, bool]]] = {
    "Observation": {
        "resourceType": ("code", False),  # checked by `conforms`
        "id": ("id", False),
        "meta": ("Meta", False),
        "status": ("code", False),
        "category": ("CodeableConcept", True),
        "code": ("CodeableConcept", False),
        "subject": ("Reference", False),
        "effectiveDateTime": ("dateTime", False),
        "issued": ("dateTime", False),  # an instant: the date-time check is full precision
        "device": ("Reference", False),
        "valueQuantity": ("Quantity", False),
        "component": ("Observation.component", True),
    },
    "Observation.component": {
        "code": ("CodeableConcept", False),
        "valueQuantity": ("Quantity", False),
    },
    "Meta": {
        "versionId": ("id", False),
        "lastUpdated": ("dateTime", False),
        "source": ("uri", False),
        "profile": ("uri", True),
    },
    "CodeableConcept": {"coding": ("Coding", True), "text": ("string", False)},
    "Coding": {
        "system": ("uri", False),
        "version": ("string", False),
        "code": ("code", False),
        "display": ("string", False),
        "userSelected": ("boolean", False),
    },
    "Reference": {
        "reference": ("string", False),
        "type": ("uri", False),
        "identifier": ("Identifier", False),
        "display": ("string", False),
    },
    "Identifier": {"use": ("code", False), "system": ("uri", False), "value": ("string", False)},
    "Quantity": {
        "value": ("decimal", False),
        "comparator": ("code", False),
        "unit": ("string", False),
        "system": ("uri", False),
        "code": ("code", False),
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "Observation": ("status", "code"),
    "Observation.component": ("code",),
}
# Required codes bound to a value set: only their values are taken on the fast path.
ENUMS: dict[tuple[str, str], frozenset[str]] = {
    ("Observation", "status"): frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error"}
    ),
    ("Quantity", "comparator"): frozenset({"<", "<=", ">=", ">"}),
    ("Identifier", "use"): frozenset({"usual", "official", "temp", "secondary", "old"}),
}


Check = Callable[[Any], bool]


def _checker(type_name: str, key: str, kind: str, many: bool) -> Check:
    """The check of one element (built once per element of SHAPES)."""
    one: Check
    if kind in TEXT_TYPES:
        one = partial(_typed_text, kind)
    elif kind == "dateTime":
        one = _date_time
    elif kind == "decimal":
        one = _decimal
    elif kind == "boolean":
        one = _boolean
    else:
        one = partial(_element, kind)
    allowed = ENUMS.get((type_name, key))
    if allowed is not None:
        one = partial(_enum, one, allowed)
    if many:
        return partial(_array, one)
    return one


def _typed_text(kind: str, value: Any) -> bool:
    return type(value) is str and _text(kind, value)


def _enum(one: Check, allowed: frozenset[str], value: Any) -> bool:
    return one(value) and value in allowed


def _array(one: Check, value: Any) -> bool:
    return type(value) is list and bool(value) and all(map(one, value))


def _element(type_name: str, value: Any) -> bool:
    if type(value) is not dict or not value:
        return False
    checks, required = _CHECKS[type_name]
    for key, item in value.items():
        check = checks.get(key)
        if check is None or not check(item):
            return False
    return value.keys() >= required


_CHECKS: dict[str, tuple[dict[str, Check], frozenset[str]]] = {
    name: (
        {key: _checker(name, key, kind, many) for key, (kind, many) in fields.items()},
        frozenset(REQUIRED.get(name, ())),
    )
    for name, fields in SHAPES.items()
}


def conforms(resource: dict[str, Any]) -> bool:
    """True if the resource is in the common shape and valid (the library would accept it);
    False means "not sure": validate with the library."""
    resource_type = resource.get("resourceType")
    if type(resource_type) is not str or resource_type not in SHAPES:
        return False
    return _element(resource_type, resource)
