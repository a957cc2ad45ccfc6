"""Validation of incoming resources against the FHIR structure definitions, using the model
classes of `fhir.resources`.

Version: the package (8.x) ships R5 as its default and R4B (4.3.0) in `fhir.resources.R4B`; there
are no R4 (4.0.1) classes. R4B is R4 plus corrections and a few new resources; for the resources
medloop serves (Patient, Observation, Condition, ...) R4B and R4 agree, so R4B is the closest
available and what we validate with. What medloop serves is plain R4 JSON.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

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
        summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:3])
        raise Invalid(f"{resource_type} failed FHIR validation: {summary}", errors=errors) from None
    return resource
