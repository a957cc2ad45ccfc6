"""The CapabilityStatement, built from the handler registry so it can only say what is there."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from medloop.fhir.common import FHIR_VERSION, instant
from medloop.fhir.registry import handlers
from medloop.fhir.service import params_of
from medloop.store.base import utcnow

RESULT_PARAMS = [
    ("_count", "number", "Page size (default 20, at most 1000)"),
    ("_offset", "number", "Paging position (used in the next/previous links)"),
    ("_sort", "string", "Sort by the parameters listed per type; '-' for descending"),
    (
        "_total",
        "token",
        "'none' skips counting; 'estimate' (the default) counts up to 10,000 matches and leaves "
        "Bundle.total out beyond; 'accurate' always counts",
    ),
    ("_summary", "token", "'count' returns only the total"),
]
OPERATIONS = [
    ("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", "system, Patient, Group"),
    ("import", "https://medloop.dev/fhir/OperationDefinition/import", "system: NDJSON body, async"),
]


def _version() -> str:
    try:
        return metadata.version("medloop")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def capability_statement(base: str) -> dict[str, Any]:
    resources = []
    for rtype, handler in handlers().items():
        interactions = [{"code": code} for code in handler.interactions]
        entry: dict[str, Any] = {
            "type": rtype,
            "documentation": handler.doc,
            "interaction": interactions,
            "versioning": "versioned-update" if "update" in handler.interactions else "versioned",
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": "create" in handler.interactions,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": [f"{rtype}:{p}" for p in handler.includes],
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.doc} for p in params_of(handler).values()
            ],
        }
        if handler.profile:
            entry["profile"] = handler.profile
        if handler.sort_names:
            entry["documentation"] += f" Sort by: {', '.join(handler.sort_names)}."
        if rtype in ("Patient", "Group"):
            entry["operation"] = [
                {
                    "name": "export",
                    "definition": f"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{rtype.lower()}-export",
                }
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(utcnow()),
        "publisher": "medloop",
        "kind": "instance",
        "software": {"name": "medloop", "version": _version()},
        "implementation": {"description": "medloop FHIR R4 API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Incoming resources are validated with the fhir.resources R4B models (the closest to R4 "
                    "available). Unknown search parameters are ignored unless 'Prefer: handling=strict'. "
                    "Errors are OperationOutcomes."
                ),
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "OAuth2 bearer tokens from /api/v1/auth/token with SMART-style scopes "
                        "(patient|user|system)/(Type|*).(read|write|cruds), "
                        "limited to the user's facility scope."
                    ),
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "searchParam": [{"name": n, "type": t, "documentation": d} for n, t, d in RESULT_PARAMS],
                "operation": [{"name": n, "definition": d, "documentation": doc} for n, d, doc in OPERATIONS],
            }
        ],
    }
