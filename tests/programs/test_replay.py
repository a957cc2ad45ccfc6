"""Replay determinism: whatever the delivery order and however often an event is re-delivered, an
enrolment ends in the same state with the same tasks as when its events are applied once, in
effective-time order. In memory (many examples) and through the database (a few, both backends)."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.programs import service
from medloop.programs.definitions import load_definitions
from medloop.programs.engine import Event, Journal, run, seed_event
from medloop.programs.models import Enrolment, ProgrammeTask
from tests.factories import World, add_patient
from tests.programs.conftest import T0, at, event, visit

LDCT = {"test": "ldct", "nodule_type": "solid", "nodule_status": "baseline", "suspicious_features": False}
HISTORIES: dict[str, tuple[dict[str, Any], list[Event]]] = {
    "hypertension": (
        {"source": "screening", "ascvd_category": "low", "ascvd_risk": 3.0},
        [
            visit("v1", 20, 150, 92),
            visit("v2", 45, 146, 91),
            event("t1", "tick", at(110)),
            visit("v3", 130, 136, 86),
            event("a1", "device_alert", at(140), rule_id="bp-critical-systolic"),
            visit("v4", 150, 184, 112),
            event("c1", "task_completed", at(151), task="device_alert"),
            visit("v5", 180, 150, 95),
            event("h1", "home_bp", at(185), sbp=150, dbp=95),
            event(
                "k1",
                "call_outcome",
                at(260),
                outcome="reached_rescheduled",
                rescheduled_to=at(270).isoformat(),
            ),
            visit("v6", 270, 128, 80),
            event("k2", "call_outcome", at(400), outcome="not_reached"),
        ],
    ),
    "lung_cancer": (
        {"source": "screening"},
        [
            event("c1", "task_completed", at(2), task="education"),
            event("l1", "test_result", at(14), **LDCT, nodule_long_mm=7.4, nodule_short_mm=5.9),
            event(
                "l2",
                "test_result",
                at(200),
                **(LDCT | {"nodule_status": "growing"}),
                nodule_long_mm=9,
                nodule_short_mm=8,
            ),
            event("m1", "mdt_recommendation", at(210), recommendation="biopsy"),
            event("p1", "test_result", at(220), test="pathology", result="adenocarcinoma"),
            event("m2", "mdt_recommendation", at(230), recommendation="surgery"),
            event("t1", "treatment_completed", at(300)),
            visit("v1", 480, 130, 80),
        ],
    ),
}


def _deliveries(data: st.DataObject, events: list[Event]) -> list[list[Event]]:
    """The events in a random order, some more than once, in batches of random size."""
    order = data.draw(st.permutations(events))
    again = data.draw(st.lists(st.sampled_from(events), max_size=6))
    stream = list(order)
    for e in again:
        stream.insert(data.draw(st.integers(0, len(stream))), e)
    batches: list[list[Event]] = []
    while stream:
        size = data.draw(st.integers(1, 4))
        batches.append(stream[:size])
        stream = stream[size:]
    return batches


@settings(max_examples=150, deadline=None)
@given(programme=st.sampled_from(sorted(HISTORIES)), data=st.data())
def test_any_delivery_order_gives_the_same_state_and_tasks(programme: str, data: st.DataObject) -> None:
    definition = load_definitions()[programme]
    seed_data, events = HISTORIES[programme]
    seed = seed_event("e-1", T0, seed_data)
    expected = run(definition, seed, events)
    journal = Journal(definition, seed)
    for batch in _deliveries(data, events):
        journal.deliver(batch)
    assert journal.state.to_json() == expected.state.to_json()
    assert journal.tasks == expected.tasks


def test_replaying_twice_gives_identical_output() -> None:
    for programme, (seed_data, events) in HISTORIES.items():
        definition = load_definitions()[programme]
        first = run(definition, seed_event("e-1", T0, seed_data), events)
        second = run(definition, seed_event("e-1", T0, seed_data), list(reversed(events)) + events)
        assert first.state.to_json() == second.state.to_json()
        assert first.tasks == second.tasks


def _new_event(e: Event, patient_id: uuid.UUID, prefix: str) -> service.NewEvent:
    payload = {
        k: v for k, v in e.data.items() if not k.startswith(("blood_pressure_", "lung_rads_", "glycaemia_"))
    }
    payload.pop("derived_by", None)
    return service.NewEvent(f"{prefix}{e.id}", patient_id, e.kind, e.at, payload)


@settings(
    max_examples=6,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # shrinking through a database is too slow
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_delivery_through_the_database_matches_a_clean_run(
    engine: Engine, world: World, data: st.DataObject
) -> None:
    definition = load_definitions()["hypertension"]
    seed_data, events = HISTORIES["hypertension"]
    principal = system_principal()
    with Session(engine, expire_on_commit=False) as s:
        patient = add_patient(s, world, f"p{uuid.uuid4().hex[:8]}", "CHC-A1")
        prefix = f"{patient.id.hex[:8]}-"
        enrolment = service.enrol(s, principal, patient.id, "hypertension", at=T0, data=seed_data)
        for batch in _deliveries(data, events):
            service.ingest_events(s, [_new_event(e, patient.id, prefix) for e in batch])
            service.process_patients(s, [patient.id], principal)
            s.commit()
        stored = s.scalars(select(ProgrammeTask).where(ProgrammeTask.enrolment_id == enrolment.id)).all()
        row = s.get(Enrolment, enrolment.id, populate_existing=True)
        assert row is not None
        live = {t.ref: (t.status, t.due_at, t.closed_at) for t in stored if t.status != "void"}
        seed = seed_event(str(enrolment.id), T0, row.seed)
        expected = run(definition, seed, [Event(f"{prefix}{e.id}", e.kind, e.at, e.data) for e in events])
    assert row.data["name"] == expected.state.name
    assert row.data["vars"] == expected.state.to_json()["vars"]
    assert row.data["open"] == expected.state.to_json()["open"]
    assert live == {t.ref: (t.status, t.due_at, t.closed_at) for t in expected.tasks.values()}
    assert row.state == expected.state.name and row.next_due_at == expected.state.next_due_at
