"""Observation ↔ `reading`: device readings, served with the FHIR vital-signs profiles.

Reading: one row per quantity. A panel (blood pressure, LOINC 85354-9) is several rows sharing a
`panel_id`; it is served as one Observation whose id is the panel id, with one component per row
(8480-6 systolic, 8462-4 diastolic). Any other reading is one Observation whose id is the row id.
The panel's first component row stands for the panel in searches ("head" rows).

Writes go through the devices ingestion pipeline (parse → normalise → validate → de-duplicate →
store → alerts): the patient is the one the device was bound to at the effective time. A
`subject` that names another patient is refused rather than silently overridden.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, and_, false, or_, select, true

from medloop.auth.models import Role
from medloop.clinical.codes import LOINC_SYSTEM, SPO2, SPO2_ARTERIAL, UCUM_SYSTEM, Measure, codebook
from medloop.devices.ingest import IngestResult, Submitter, ingest_entries, load_devices
from medloop.devices.models import Device, Reading
from medloop.devices.payloads import fhir as fhir_payload
from medloop.devices.types import Item, Outcome, Reason, Rejected
from medloop.errors import NotFound, Unprocessable
from medloop.fhir.access import permits, scopes_of
from medloop.fhir.common import (
    DEVICE_SERIAL_SYSTEM,
    OBSERVATION_CATEGORY,
    Ctx,
    instant,
    meta,
    parse_uuid,
    ref,
)
from medloop.fhir.handler import AnySelect, Found, TableHandler, Written
from medloop.fhir.search import (
    Param,
    date_param,
    reference,
    reference_param,
    token_param,
)

# Category and vital-signs profile per measure (by canonical LOINC code). Measures not listed are
# served in category "exam" without a profile.
VITAL_SIGNS = "http://hl7.org/fhir/StructureDefinition"
CATEGORY_PROFILE: dict[str, tuple[str, str | None]] = {
    "85354-9": ("vital-signs", f"{VITAL_SIGNS}/bp"),
    "8480-6": ("vital-signs", f"{VITAL_SIGNS}/vitalsigns"),
    "8462-4": ("vital-signs", f"{VITAL_SIGNS}/vitalsigns"),
    "8867-4": ("vital-signs", f"{VITAL_SIGNS}/heartrate"),
    "59408-5": ("vital-signs", f"{VITAL_SIGNS}/oxygensat"),
    "29463-7": ("vital-signs", f"{VITAL_SIGNS}/bodyweight"),
    "8302-2": ("vital-signs", f"{VITAL_SIGNS}/bodyheight"),
    "39156-5": ("vital-signs", f"{VITAL_SIGNS}/bmi"),
    "8310-5": ("vital-signs", f"{VITAL_SIGNS}/bodytemp"),
    "8280-0": ("vital-signs", f"{VITAL_SIGNS}/vitalsigns"),
    "14771-0": ("laboratory", None),
    "4548-4": ("laboratory", None),
}
CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "exam": "Exam"}
# The vital-signs profile wants SpO2 coded with both codes.
EXTRA_CODES = {SPO2: (SPO2_ARTERIAL,)}


@cache
def panels() -> dict[str, tuple[str, ...]]:
    """Panel code -> its component codes, from the code book."""
    return {m.loinc: m.components for m in codebook().measures.values() if m.is_panel}


@cache
def heads() -> dict[str, str]:
    """The code of the row that stands for a panel -> the panel code."""
    return {components[0]: panel for panel, components in panels().items()}


def category_of(code: str) -> str:
    return CATEGORY_PROFILE.get(code, ("exam", None))[0]


def is_head() -> ColumnElement[bool]:
    return or_(
        Reading.panel_id.is_(None), and_(Reading.panel_id.is_not(None), Reading.code.in_(list(heads())))
    )


def _concept(m: Measure) -> dict[str, Any]:
    coding = [{"system": LOINC_SYSTEM, "code": m.loinc, "display": m.display}]
    coding += [{"system": LOINC_SYSTEM, "code": c} for c in EXTRA_CODES.get(m.loinc, ())]
    return {"coding": coding, "text": m.display}


def _quantity(row: Reading) -> dict[str, Any]:
    return {"value": row.value, "unit": row.unit, "system": UCUM_SYSTEM, "code": row.unit}


def observation_to_fhir(head: Reading, serial: str, parts: Sequence[Reading] = ()) -> dict[str, Any]:
    book = codebook()
    code = heads()[head.code] if head.panel_id is not None else head.code
    category, profile = CATEGORY_PROFILE.get(code, ("exam", None))
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(head.panel_id or head.id),
        "meta": meta("1", head.received_at, profile=[profile] if profile else None),
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": OBSERVATION_CATEGORY, "code": category, "display": CATEGORY_DISPLAY[category]}
                ]
            }
        ],
        "code": _concept(book.measures[code]),
        "subject": ref("Patient", head.patient_id),
        "effectiveDateTime": instant(head.effective_at),
        "issued": instant(head.received_at),
        "device": {
            **ref("Device", head.device_id),
            "identifier": {"system": DEVICE_SERIAL_SYSTEM, "value": serial},
            "display": serial,
        },
    }
    if head.panel_id is None:
        doc["valueQuantity"] = _quantity(head)
    else:
        order = panels()[code]
        rows = sorted(parts, key=lambda r: order.index(r.code) if r.code in order else len(order))
        doc["component"] = [
            {"code": _concept(book.measures[r.code]), "valueQuantity": _quantity(r)} for r in rows
        ]
    return doc


def _code(system: str | None, code: str) -> ColumnElement[bool] | None:
    if system not in (None, "", LOINC_SYSTEM):
        return None
    found = codebook().by_key.get(code.lower())
    if found is None:
        return None
    if found.is_panel:
        return and_(Reading.code == found.components[0], Reading.panel_id.is_not(None))
    return and_(Reading.code == found.loinc, Reading.panel_id.is_(None))


def _category(system: str | None, code: str) -> ColumnElement[bool] | None:
    if system not in (None, "", OBSERVATION_CATEGORY):
        return None
    codes = [c for c in codebook().measures if category_of(c) == code]
    if not codes:
        return None
    singles = [c for c in codes if c not in panels()]
    panel_heads = [panels()[c][0] for c in codes if c in panels()]
    return or_(
        and_(Reading.panel_id.is_(None), Reading.code.in_(singles)),
        and_(Reading.panel_id.is_not(None), Reading.code.in_(panel_heads)),
    )


def _status(_system: str | None, code: str) -> ColumnElement[bool]:
    return true() if code == "final" else false()


def _ids(values: list[str], _modifier: str) -> ColumnElement[bool]:
    ids = [u for u in (parse_uuid(v) for v in values) if u is not None]
    return or_(Reading.panel_id.in_(ids), Reading.id.in_(ids)) if ids else false()


class ObservationRejected(Unprocessable):
    """The pipeline refused the reading (it is kept in the dead-letter table with its reason)."""

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(f"{rejected.reason.value}: {rejected.detail}")
        self.rejected = rejected
        if rejected.reason is Reason.FORBIDDEN:
            self.status, self.code = 403, "forbidden"


@dataclass
class Ingested:
    result: IngestResult
    written: list[Written | Exception]


class ObservationHandler(TableHandler):
    type = "Observation"
    compartment = True
    profile = f"{VITAL_SIGNS}/vitalsigns"
    interactions = ("read", "search-type", "create")
    write_roles = (Role.CLINICIAN, Role.SCREENER, Role.DEVICE)
    read_roles = (Role.CLINICIAN, Role.SCREENER, Role.PROGRAMME_MANAGER)
    includes: ClassVar[dict[str, str]] = {"subject": "Patient", "patient": "Patient", "device": "Device"}
    audits_writes = True  # the pipeline writes the audit record
    id_column = Reading.id
    patient_column = Reading.patient_id
    updated_column = Reading.received_at
    sort_columns: ClassVar[dict[str, Any]] = {
        "date": Reading.effective_at,
        "_lastUpdated": Reading.received_at,
    }
    doc = (
        "Device readings (vital-signs profile; BP as a 85354-9 panel with 8480-6/8462-4 components). "
        "Created through the devices ingestion pipeline; the device must be bound to the patient."
    )

    def params(self) -> dict[str, Param]:
        return {
            "_id": Param("_id", "token", "The Observation id", _ids),
            "_lastUpdated": date_param("_lastUpdated", Reading.received_at, "When received"),
            "patient": reference_param("patient", Reading.patient_id, "Patient", "The patient"),
            "subject": reference_param("subject", Reading.patient_id, "Patient", "The patient"),
            "code": token_param("code", "LOINC code (2708-6 finds SpO2 too)", _code),
            "category": token_param("category", "vital-signs | laboratory | exam", _category),
            "date": date_param(
                "date", Reading.effective_at, "Effective time (eq, ne, gt, lt, ge, le, sa, eb)"
            ),
            "status": token_param("status", "Always final", _status),
            "device": reference_param("device", Reading.device_id, "Device", "The device"),
        }

    def base(self, ctx: Ctx) -> AnySelect:
        stmt = select(Reading, Device.serial).join(Device, Device.id == Reading.device_id).where(is_head())
        return self.scoped(ctx, stmt)

    def read(self, ctx: Ctx, rid: str) -> Found:
        found = self.by_ids(ctx, [self.parse_id(rid)])
        if not found:
            raise NotFound(f"Observation/{rid} not found in your facility scope")
        return found[0]

    def by_ids(self, ctx: Ctx, ids: Sequence[uuid.UUID]) -> list[Found]:
        stmt = self.base(ctx).where(or_(Reading.panel_id.in_(ids), Reading.id.in_(ids)))
        return self.hydrate(ctx, ctx.session.execute(stmt).all())

    def stored(self, ctx: Ctx, reading_ids: Sequence[uuid.UUID]) -> list[Found]:
        """The Observations just written, for the response. The pipeline has checked the writer's
        facility scope; a writer without read permission (a device) does not get them back."""
        if not permits(scopes_of(ctx.principal), self.type, "r", self.compartment):
            return []
        stmt = select(Reading, Device.serial).join(Device, Device.id == Reading.device_id)
        rows = ctx.session.execute(stmt.where(Reading.id.in_(reading_ids))).all()
        parts: dict[uuid.UUID, list[Reading]] = {}
        for r in rows:
            if r[0].panel_id is not None:
                parts.setdefault(r[0].panel_id, []).append(r[0])
        head_codes = heads()
        return [
            Found(observation_to_fhir(r[0], r[1], parts.get(r[0].panel_id, ())), r[0].patient_id)  # type: ignore[arg-type]
            for r in rows
            if r[0].panel_id is None or r[0].code in head_codes
        ]

    def hydrate(self, ctx: Ctx, rows: Sequence[Any]) -> list[Found]:
        panel_ids = [r[0].panel_id for r in rows if r[0].panel_id is not None]
        parts: dict[uuid.UUID, list[Reading]] = {}
        if panel_ids:
            for part in ctx.session.scalars(select(Reading).where(Reading.panel_id.in_(panel_ids))):
                parts.setdefault(part.panel_id, []).append(part)  # type: ignore[arg-type]
        return [
            Found(observation_to_fhir(r[0], r[1], parts.get(r[0].panel_id, ())), r[0].patient_id)
            for r in rows
        ]

    # --- writes: the devices pipeline ---------------------------------------------------------

    def create(self, ctx: Ctx, resource: dict[str, Any]) -> Written:
        ingested = self.ingest(ctx, [resource], dead_letter=True)
        (outcome,) = ingested.written
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def create_many(self, ctx: Ctx, resources: Sequence[dict[str, Any]]) -> list[Written | Exception]:
        return self.ingest(ctx, resources, dead_letter=False).written

    def ingest(self, ctx: Ctx, resources: Sequence[dict[str, Any]], *, dead_letter: bool) -> Ingested:
        resources = with_serials(ctx, resources)
        result = run_pipeline(ctx, resources, channel="fhir", dead_letter=dead_letter)
        reading_ids = [i for r in result.items for i in r.reading_ids]
        found = {f.id: f for f in self.stored(ctx, reading_ids)} if reading_ids else {}
        rejected = {r.index: r for r in result.rejected}
        written: list[Written | Exception] = []
        for item in result.items:
            if item.status is Outcome.REJECTED:
                written.append(ObservationRejected(rejected[item.index]))
            elif str(item.id) in found:
                written.append(Written(found[str(item.id)], item.status is Outcome.STORED))
            else:  # a submitter who may not read Observations (a device) gets back what it sent
                written.append(
                    Written(Found(_minimal(resources[item.index], item.id)), item.status is Outcome.STORED)
                )
        return Ingested(result, written)


def run_pipeline(
    ctx: Ctx, resources: Sequence[dict[str, Any]], *, channel: str, dead_letter: bool
) -> IngestResult:
    """Validated Observations (with their serials: `with_serials`) through the devices pipeline
    in one call: parse, subject check, normalise, validate, de-duplicate, store, alerts, audit."""
    who = ctx.submitter() if ctx.submitter is not None else Submitter(ctx.principal, check_scope=True)
    entries = [fhir_payload.parse_observation(r, i, who.serial) for i, r in enumerate(resources)]
    entries = check_subjects(ctx, entries, resources)
    return ingest_entries(ctx.session, entries, channel=channel, submitter=who, dead_letter=dead_letter)


def _minimal(resource: dict[str, Any], rid: uuid.UUID | None) -> dict[str, Any]:
    return {**resource, "id": str(rid), "meta": meta("1", None)}


def with_serials(ctx: Ctx, resources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pipeline knows devices by serial: add it where only `device.reference` names one."""
    wanted = {
        i: parse_uuid(str(r["device"].get("reference", "")).rpartition("/")[2])
        for i, r in enumerate(resources)
        if isinstance(r.get("device"), dict)
        and "identifier" not in r["device"]
        and "display" not in r["device"]
        and str(r["device"].get("reference", "")).startswith("Device/")
    }
    ids = {u for u in wanted.values() if u is not None}
    if not ids:
        return list(resources)
    serials = dict(
        ctx.session.execute(select(Device.id, Device.serial).where(Device.id.in_(ids))).tuples().all()
    )
    out = list(resources)
    for i, device_id in wanted.items():
        if device_id in serials:
            out[i] = {**out[i], "device": {**out[i]["device"], "identifier": {"value": serials[device_id]}}}
    return out


def check_subjects(
    ctx: Ctx, entries: list[Item | Rejected], resources: Sequence[dict[str, Any]]
) -> list[Item | Rejected]:
    """A `subject` must name the patient the device was bound to at the effective time."""
    named = {
        e.index: resources[e.index]["subject"]
        for e in entries
        if isinstance(e, Item) and isinstance(resources[e.index].get("subject"), dict)
    }
    if not named:
        return entries
    devices = load_devices(
        ctx.session, {e.device_serial for e in entries if isinstance(e, Item) and e.device_serial}
    )
    out: list[Item | Rejected] = []
    for e in entries:
        subject = named.get(e.index) if isinstance(e, Item) else None
        view = devices.get(e.device_serial or "") if isinstance(e, Item) else None
        if isinstance(e, Item) and subject is not None and view is not None:
            bound = view.patient_at(e.effective_at)
            text = str(subject.get("reference", ""))
            if bound is not None and reference(text, "Patient") != bound:
                out.append(
                    Rejected(
                        e.index,
                        e.format,
                        e.raw,
                        e.device_serial,
                        Reason.UNBOUND,
                        f"subject {text[:80]!r} is not the patient the device was bound to then",
                    )
                )
                continue
        out.append(e)
    return out
