"""What every part of the FHIR layer shares: the request context, code systems, references,
instants, and the errors that have no general medloop class."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.errors import Problem, Unprocessable

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"
FHIR_VERSION = "4.0.1"

# medloop's own identifier and code systems.
SID = "https://medloop.dev/fhir/sid"
NATIONAL_ID_SYSTEM = f"{SID}/national-id"  # PRC resident identity card number
MRN_SYSTEM_PREFIX = f"{SID}/mrn/"  # + the issuing organisation's id
ORG_CODE_SYSTEM = f"{SID}/organisation-code"
DEVICE_SERIAL_SYSTEM = f"{SID}/device-serial"
CS = "https://medloop.dev/fhir/CodeSystem"
TIER_SYSTEM = f"{CS}/organisation-tier"
CAPABILITY_SYSTEM = f"{CS}/organisation-capability"
DEVICE_KIND_SYSTEM = f"{CS}/device-kind"
PRACTITIONER_ROLE_SYSTEM = f"{CS}/practitioner-role"
RISK_MODEL_SYSTEM = f"{CS}/risk-model"
RISK_CATEGORY_SYSTEM = f"{CS}/risk-category"
SD = "https://medloop.dev/fhir/StructureDefinition"
CAPABILITY_EXTENSION = f"{SD}/organisation-capability"
RISK_SCORE_EXTENSION = f"{SD}/risk-score"
GEOLOCATION_EXTENSION = "http://hl7.org/fhir/StructureDefinition/geolocation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SECURITY_MASKED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "MASKED",
    "display": "masked",
}


@dataclass(frozen=True)
class Ctx:
    """One FHIR interaction: the session it runs in, who acts, and the public base URL."""

    session: Session
    principal: Principal
    base: str  # e.g. http://host/fhir (no trailing slash)
    # Who submits readings (devices.ingest.Submitter), when the transport says more than the
    # principal does (a device token, a device service user); None: the principal, facility-scoped.
    submitter: Callable[[], Any] | None = None


class Gone(Problem):
    status, title, code = 410, "Gone", "deleted"


class NotSupported(Problem):
    status, title, code = 405, "Method not allowed", "not-supported"


class UnknownParameter(Problem):
    """A search parameter the server does not support, under `Prefer: handling=strict`."""

    status, title, code = 400, "Bad request", "not-supported"


class Invalid(Problem):
    """The resource is not valid FHIR (400, as the FHIR RESTful API asks for parse/validation errors)."""

    status, title, code = 400, "Bad request", "invalid"


def instant(value: datetime | None) -> str | None:
    """FHIR instant: UTC with an explicit offset."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def version_of(updated: datetime) -> str:
    """A version id for rows that carry `updated_at` but no counter: it changes whenever the row
    changes, through any API."""
    return str(int(updated.timestamp() * 1_000_000))


def meta(version: str, last_updated: datetime | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"versionId": version}
    if last_updated is not None:
        doc["lastUpdated"] = instant(last_updated)
    doc.update({k: v for k, v in extra.items() if v})
    return doc


def ref(resource_type: str, rid: object) -> dict[str, str]:
    return {"reference": f"{resource_type}/{rid}"}


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def reference_id(value: Any, expected_type: str, where: str) -> uuid.UUID:
    """The id in a `{"reference": "Type/id"}` (or an absolute URL ending so); Unprocessable if not."""
    text = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise Unprocessable(f"{where} must be a reference to a {expected_type}")
    parts = text.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != expected_type or parse_uuid(parts[-1]) is None:
        raise Unprocessable(f"{where} must reference {expected_type}/<id>; got {text[:80]!r}")
    found = parse_uuid(parts[-1])
    assert found is not None
    return found


def parse_date(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except (ValueError, TypeError):
        raise Unprocessable(f"{where} must be a date (YYYY-MM-DD)") from None


def first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def codings(concept: Any) -> list[dict[str, Any]]:
    found = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def code_in(concept: Any, system: str) -> str | None:
    return next(
        (c.get("code") for c in codings(concept) if c.get("system") == system and c.get("code")), None
    )
