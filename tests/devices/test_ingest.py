"""The whole pipeline against the database (SQLite and PostgreSQL): mixed batches, idempotent
retries, alerts, audit, binding history, dead letters and their replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.auth.principal import system_principal
from medloop.devices import deadletter, service
from medloop.devices.ingest import IngestResult, Submitter, ingest
from medloop.devices.models import DeadLetter, DeviceAlert, Reading
from medloop.store.base import utcnow
from tests.devices.conftest import Fleet, count

SYSTEM = Submitter(system_principal())


def iso(minutes_ago: float) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).isoformat()


def run(fleet: Fleet, doc: Any, submitter: Submitter = SYSTEM, channel: str = "http") -> IngestResult:
    with Session(fleet.engine, expire_on_commit=False) as s:
        result = ingest(s, doc, channel=channel, submitter=submitter)
        s.commit()
    return result


def mixed_batch() -> dict[str, Any]:
    return {
        "readings": [
            {
                "device": "BP-1",
                "type": "blood_pressure",
                "systolic": 128,
                "diastolic": 82,
                "unit": "mmHg",
                "at": iso(60),
            },
            {"device": "BP-1", "type": "heart_rate", "value": 71, "unit": "bpm", "at": iso(60)},
            {
                "device": "BP-1",
                "type": "blood_pressure",
                "systolic": 80,
                "diastolic": 90,
                "unit": "mmHg",
                "at": iso(50),
            },
            {"device": "BP-1", "type": "pulse_pressure", "value": 40, "unit": "mmHg", "at": iso(40)},
            {"device": "NOPE-9", "type": "heart_rate", "value": 70, "unit": "/min", "at": iso(30)},
            {"device": "BP-1", "type": "heart_rate", "value": 70, "unit": "/min", "at": iso(-60)},
            {"device": "IDLE-1", "type": "heart_rate", "value": 70, "unit": "/min", "at": iso(20)},
            {"device": "BP-1", "type": "heart_rate", "value": "fast", "unit": "/min", "at": iso(10)},
        ]
    }


def test_mixed_batch_stores_good_and_dead_letters_bad(fleet: Fleet) -> None:
    result = run(fleet, mixed_batch())
    statuses = [(r.status.value, r.reason) for r in result.items]
    assert statuses == [
        ("stored", None),
        ("stored", None),
        ("rejected", "implausible"),
        ("rejected", "unknown_code"),
        ("rejected", "unknown_device"),
        ("rejected", "future"),
        ("rejected", "unbound"),
        ("rejected", "malformed"),
    ]
    alice = fleet.world.patients["alice"].id
    with Session(fleet.engine) as s:
        readings = s.scalars(select(Reading).order_by(Reading.code)).all()
        assert [(r.code, r.value, r.unit) for r in readings] == [
            ("8462-4", 82.0, "mm[Hg]"),
            ("8480-6", 128.0, "mm[Hg]"),
            ("8867-4", 71.0, "/min"),
        ]
        assert {r.patient_id for r in readings} == {alice}
        sbp, dbp = readings[1], readings[0]
        assert sbp.panel_id == dbp.panel_id == result.items[0].id and readings[2].panel_id is None
        assert count(s, DeadLetter) == 6
        reasons = sorted(s.scalars(select(DeadLetter.reason)).all())
        assert reasons == sorted(
            ["implausible", "unknown_code", "unknown_device", "future", "unbound", "malformed"]
        )
        audit = s.scalars(select(AuditEvent).where(AuditEvent.resource_type == "Observation")).all()
        assert [(a.action, a.patient_id, a.detail["readings"]) for a in audit] == [("create", alice, 3)]


def test_retry_is_a_no_op(fleet: Fleet) -> None:
    doc = mixed_batch()
    run(fleet, doc)
    again = run(fleet, doc)
    assert [r.status.value for r in again.items[:2]] == ["duplicate", "duplicate"]
    assert again.alerts == 0
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 3
        assert count(s, DeadLetter) == 6
        assert count(s, AuditEvent, AuditEvent.resource_type == "Observation") == 1


def test_duplicate_inside_one_batch(fleet: Fleet) -> None:
    reading = {"device": "OX-1", "type": "spo2", "value": 97, "unit": "%", "at": iso(5)}
    result = run(fleet, {"readings": [reading, dict(reading), {**reading, "at": iso(4)}]})
    assert [r.status.value for r in result.items] == ["stored", "duplicate", "stored"]
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 2


def test_stored_rows_read_back_as_sent(fleet: Fleet) -> None:
    """What the store stage writes (binary COPY on PostgreSQL) reads back field for field."""
    at = (utcnow() - timedelta(minutes=30)).replace(microsecond=123456)
    doc = {
        "readings": [
            {"device": "BP-1", "type": "blood_pressure", "systolic": 16.0, "diastolic": 10.7, "unit": "kPa"},
            {"device": "GLU-1", "type": "glucose", "value": 112, "unit": "mg/dL"},
        ]
    }
    for reading in doc["readings"]:
        reading["at"] = at.isoformat()
    result = run(fleet, doc)
    with Session(fleet.engine) as s:
        stored = {r.code: r for r in s.scalars(select(Reading))}
    assert set(stored) == {"8480-6", "8462-4", "14771-0"}
    sbp, dbp, glucose = stored["8480-6"], stored["8462-4"], stored["14771-0"]
    assert sbp.panel_id == dbp.panel_id == result.items[0].id and glucose.panel_id is None
    assert [r.id for r in (sbp, dbp)] == result.items[0].reading_ids
    assert (sbp.unit, glucose.unit, sbp.channel) == ("mm[Hg]", "mmol/L", "http")
    assert abs(sbp.value - 120.01) < 0.01 and abs(dbp.value - 80.26) < 0.01
    assert abs(glucose.value - 112 / 18.016) < 1e-9
    assert sbp.effective_at == glucose.effective_at == at
    assert sbp.patient_id == fleet.world.patients["alice"].id


def test_large_batch_with_some_readings_already_stored(fleet: Fleet) -> None:
    """Readings already stored far into a batch (after several COPY chunks were sent): the batch
    falls back to insert-if-new, and every reading, stored earlier or not, is in the table once."""
    base = utcnow() - timedelta(hours=2)
    readings = [
        {
            "device": "SCALE-1",
            "type": "body_weight",
            "value": 70,
            "unit": "kg",
            "at": (base + timedelta(seconds=i)).isoformat(),
        }
        for i in range(2500)
    ]
    run(fleet, {"readings": readings[2000:2010]})
    result = run(fleet, {"readings": readings})
    statuses = [r.status.value for r in result.items]
    assert statuses[2000:2010] == ["duplicate"] * 10
    assert statuses.count("stored") == 2490
    with Session(fleet.engine) as s:
        assert count(s, Reading) == 2500


def test_same_instant_in_another_zone_is_a_duplicate(fleet: Fleet) -> None:
    when = utcnow().replace(microsecond=0) - timedelta(hours=1)
    base = {"device": "GLU-1", "type": "glucose", "value": 6.1, "unit": "mmol/L"}
    run(fleet, {"readings": [{**base, "at": when.isoformat()}]})
    from datetime import timezone

    shanghai = when.astimezone(timezone(timedelta(hours=8))).isoformat()
    result = run(fleet, {"readings": [{**base, "at": shanghai}]})
    assert result.items[0].status.value == "duplicate"


def test_dangerous_values_raise_alerts_once(fleet: Fleet) -> None:
    doc = {
        "readings": [
            {
                "device": "BP-1",
                "type": "blood_pressure",
                "systolic": 186,
                "diastolic": 96,
                "unit": "mmHg",
                "at": iso(3),
            },
            {"device": "GLU-1", "type": "glucose", "value": 50, "unit": "mg/dL", "at": iso(3)},
            {"device": "GLU-1", "type": "glucose", "value": 320, "unit": "mg/dL", "at": iso(2)},
            {"device": "OX-1", "type": "spo2", "value": 88, "unit": "%", "at": iso(3)},
            {"device": "OX-1", "type": "spo2", "value": 95, "unit": "%", "at": iso(2)},
        ]
    }
    assert run(fleet, doc).alerts == 5
    assert run(fleet, doc).alerts == 0
    with Session(fleet.engine) as s:
        alerts = s.scalars(select(DeviceAlert)).all()
        assert sorted(a.rule_id for a in alerts) == [
            "bp-critical-systolic",
            "glucose-hyper-severe",
            "glucose-hypo",
            "glucose-hypo-level2",
            "spo2-low",
        ]
        assert all(a.status == "open" for a in alerts)
        by_rule = {a.rule_id: a for a in alerts}
        assert by_rule["bp-critical-systolic"].patient_id == fleet.world.patients["alice"].id
        assert by_rule["glucose-hyper-severe"].value > 16.7


def test_rebinding_routes_readings_to_the_new_patient(fleet: Fleet) -> None:
    admin = system_principal()
    switch = utcnow() - timedelta(hours=2)
    with Session(fleet.engine, expire_on_commit=False) as s:
        service.bind(s, admin, "BP-1", fleet.world.patients["bob"].id, start_at=switch)
        s.commit()
    run(
        fleet,
        {
            "device": "BP-1",
            "readings": [
                {"type": "heart_rate", "value": 60, "unit": "/min", "at": iso(180)},
                {"type": "heart_rate", "value": 61, "unit": "/min", "at": iso(60)},
            ],
        },
    )
    with Session(fleet.engine) as s:
        owners = [r.patient_id for r in s.scalars(select(Reading).order_by(Reading.effective_at)).all()]
    assert owners == [fleet.world.patients["alice"].id, fleet.world.patients["bob"].id]


def test_submitter_restrictions(fleet: Fleet) -> None:
    reading = {"type": "heart_rate", "value": 60, "unit": "/min", "at": iso(1)}
    mqtt = Submitter(system_principal(), serial="BP-1")
    result = run(fleet, {"readings": [{**reading, "device": "OX-1"}, reading]}, mqtt, "mqtt")
    assert [(r.status.value, r.reason) for r in result.items] == [
        ("rejected", "serial_mismatch"),
        ("stored", None),
    ]


def test_dead_letter_replay_after_fix(fleet: Fleet) -> None:
    doc = {
        "readings": [{"device": "NEW-7", "type": "heart_rate", "value": 66, "unit": "/min", "at": iso(30)}]
    }
    assert run(fleet, doc).items[0].reason == "unknown_device"
    admin = system_principal()
    with Session(fleet.engine, expire_on_commit=False) as s:
        (letter,) = deadletter.list_dead_letters(s)
        assert letter.reason == "unknown_device" and letter.payload["device"] == "NEW-7"
        report = deadletter.replay(s, admin)
        assert (report.replayed, report.still_failing) == (0, 1)
        service.register_device(s, "NEW-7", "pulse_oximeter")
        report = deadletter.replay(s, admin)
        assert report.still_failing == 1 and letter.reason == "unbound"
        service.bind(s, admin, "NEW-7", fleet.world.patients["carol"].id, start_at=fleet.bound_since)
        report = deadletter.replay(s, admin)
        s.commit()
        assert (report.replayed, report.still_failing) == (1, 0)
        assert letter.status == "replayed" and letter.replay_count == 3
        assert count(s, Reading, Reading.channel == "replay") == 1
        assert deadletter.list_dead_letters(s) == []
        assert deadletter.replay(s, admin).replayed == 0


def test_fhir_and_open_mhealth_through_the_pipeline(fleet: Fleet) -> None:
    at = iso(15)
    fhir = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                    "effectiveDateTime": at,
                    "device": {"identifier": {"value": "BP-1"}},
                    "component": [
                        {
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                            "valueQuantity": {
                                "value": 17.3,
                                "system": "http://unitsofmeasure.org",
                                "code": "kPa",
                            },
                        },
                        {
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                            "valueQuantity": {
                                "value": 11.2,
                                "system": "http://unitsofmeasure.org",
                                "code": "kPa",
                            },
                        },
                    ],
                }
            }
        ],
    }
    omh = {
        "header": {
            "schema_id": {"namespace": "omh", "name": "body-weight", "version": "2.0"},
            "acquisition_provenance": {"source_name": "SCALE-1"},
        },
        "body": {"body_weight": {"value": 165, "unit": "lb"}, "effective_time_frame": {"date_time": at}},
    }
    assert run(fleet, fhir).items[0].status.value == "stored"
    assert run(fleet, omh).items[0].status.value == "stored"
    with Session(fleet.engine) as s:
        values = {r.code: round(r.value, 2) for r in s.scalars(select(Reading)).all()}
    assert values == {"8480-6": 129.76, "8462-4": 84.01, "29463-7": 74.84}
