"""What flows between the pipeline's stages. Parsers produce `Item`s (or `Rejected`), normalise turns
an Item into a `Normalised` reading, validate into an `Accepted` one bound to a device and patient."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class Reason(StrEnum):
    """Why a reading was rejected (the `reason` column of the dead-letter table)."""

    MALFORMED = "malformed"
    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_UNIT = "unknown_unit"
    IMPLAUSIBLE = "implausible"
    FUTURE = "future"
    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    UNBOUND = "unbound"
    FORBIDDEN = "forbidden"
    SERIAL_MISMATCH = "serial_mismatch"


@dataclass(slots=True)
class Item:
    """One reading as found in a payload: codes, values and units as sent."""

    index: int  # position in the submission
    format: str  # compact, fhir, omh
    raw: dict[str, Any]  # self-contained: can be dead-lettered and replayed on its own
    device_serial: str | None
    code: str  # LOINC code or measure name, as sent
    effective_at: datetime
    components: list[tuple[str, float, str]]  # (code or name, value, unit); one entry unless a panel


@dataclass(slots=True)
class Rejected:
    index: int
    format: str
    raw: dict[str, Any]
    device_serial: str | None
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Quantity:
    code: str  # canonical LOINC
    value: float  # in `unit`
    unit: str  # canonical UCUM


@dataclass(slots=True)
class Normalised:
    item: Item
    code: str  # canonical LOINC of the reading (a panel code for panels)
    quantities: tuple[Quantity, ...]


@dataclass(slots=True)
class Accepted:
    reading: Normalised
    device_id: uuid.UUID
    patient_id: uuid.UUID


class ReadingRow(NamedTuple):
    """One row of the `reading` table, its fields in the table's column order."""

    id: uuid.UUID
    patient_id: uuid.UUID
    device_id: uuid.UUID
    code: str  # canonical LOINC
    value: float  # in `unit`
    unit: str  # canonical UCUM
    effective_at: datetime  # UTC
    received_at: datetime
    panel_id: uuid.UUID | None  # the panel's id, shared by its components
    channel: str


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
