"""Which FHIR resource types medloop serves, and the handler of each: the one table the router,
bundles, bulk data and the CapabilityStatement all read. Adding a type is one line here plus its
mapping module (or one `Spec` row for types kept whole in `fhir_resource`)."""

from __future__ import annotations

from functools import cache

from medloop.errors import NotFound
from medloop.fhir.handler import Handler
from medloop.fhir.mapping.clinical import AuditEventHandler, RiskAssessmentHandler
from medloop.fhir.mapping.device import DeviceHandler
from medloop.fhir.mapping.network import GroupHandler, LocationHandler, OrganizationHandler
from medloop.fhir.mapping.observation import ObservationHandler
from medloop.fhir.mapping.patient import PatientHandler
from medloop.fhir.mapping.practitioner import PractitionerHandler, PractitionerRoleHandler
from medloop.fhir.mapping.programs import (
    CarePlanHandler,
    EncounterHandler,
    ServiceRequestHandler,
    TaskHandler,
)
from medloop.fhir.mapping.stored import SPECS, StoredHandler


@cache
def handlers() -> dict[str, Handler]:
    table: list[Handler] = [
        PatientHandler(),
        PractitionerHandler(),
        PractitionerRoleHandler(),
        OrganizationHandler(),
        LocationHandler(),
        GroupHandler(),
        DeviceHandler(),
        ObservationHandler(),
        RiskAssessmentHandler(),
        AuditEventHandler(),
        CarePlanHandler(),
        TaskHandler(),
        ServiceRequestHandler(),
        EncounterHandler(),
        *(StoredHandler(spec) for spec in SPECS),
    ]
    return {h.type: h for h in sorted(table, key=lambda h: h.type)}


def handler_or_none(resource_type: str) -> Handler | None:
    return handlers().get(resource_type)


def handler_for(resource_type: str) -> Handler:
    found = handlers().get(resource_type)
    if found is None:
        raise NotFound(
            f"resource type {resource_type!r} is not supported; see /fhir/metadata for the ones that are"
        )
    return found


def patient_data_types() -> list[str]:
    """Resource types in the patient compartment (what a Patient or Group export contains)."""
    return [t for t, h in handlers().items() if h.compartment]
