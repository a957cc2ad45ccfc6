"""Each pipeline stage alone: normalise, validate (plausibility, time, binding), de-duplicate,
evaluate, dead-letter ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from medloop.devices.alerts import evaluate, load_rules, parse_rules
from medloop.devices.pipeline import (
    DeviceView,
    check_not_future,
    check_plausible,
    dead_letter_id,
    deduplicate,
    normalise,
    reading_id,
    resolve,
    to_rows,
)
from medloop.devices.types import Accepted, Item, Normalised, Quantity, ReadingRow, Reason, Rejected

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def item(code: str, components: list[tuple[str, float, str]], at: datetime = NOW, serial: str = "D1") -> Item:
    return Item(0, "compact", {"x": 1}, serial, code, at, components)


def norm(code: str, value: float, unit: str) -> Normalised:
    result = normalise(item(code, [(code, value, unit)]))
    assert isinstance(result, Normalised), result
    return result


@pytest.mark.parametrize(
    ("code", "value", "unit", "loinc", "expected", "canonical"),
    [
        ("heart_rate", 72, "bpm", "8867-4", 72, "/min"),
        ("1558-6", 180.16, "mg/dL", "14771-0", 10.0, "mmol/L"),
        ("glucose", 5.5, "mmol/l", "14771-0", 5.5, "mmol/L"),
        ("weight", 150, "lb", "29463-7", 68.0388555, "kg"),
        ("height", 70, "in", "8302-2", 177.8, "cm"),
        ("temperature", 98.6, "°F", "8310-5", 37.0, "Cel"),
        ("fev1", 3200, "mL", "20150-9", 3.2, "L"),
        ("2708-6", 97, "%", "59408-5", 97, "%"),
    ],
)
def test_normalise_single(
    code: str, value: float, unit: str, loinc: str, expected: float, canonical: str
) -> None:
    result = norm(code, value, unit)
    (q,) = result.quantities
    assert (result.code, q.code, q.unit) == (loinc, loinc, canonical)
    assert q.value == pytest.approx(expected, abs=1e-6)


def test_normalise_bp_panel_in_kpa() -> None:
    result = normalise(item("blood_pressure", [("8480-6", 16.0, "kPa"), ("8462-4", 10.7, "kPa")]))
    assert isinstance(result, Normalised) and result.code == "85354-9"
    assert [q.code for q in result.quantities] == ["8480-6", "8462-4"]
    assert result.quantities[0].value == pytest.approx(120.01, abs=0.01)
    assert result.quantities[1].unit == "mm[Hg]"


@pytest.mark.parametrize(
    ("code", "components", "reason"),
    [
        ("pulse_pressure", [("pulse_pressure", 40, "mmHg")], Reason.UNKNOWN_CODE),
        ("heart_rate", [("heart_rate", 72, "furlongs")], Reason.UNKNOWN_UNIT),
        ("heart_rate", [("heart_rate", 72, "mmHg")], Reason.UNKNOWN_UNIT),
        ("glucose", [("glucose", 5.5, "kg")], Reason.UNKNOWN_UNIT),
        ("85354-9", [("8480-6", 120, "mmHg")], Reason.MALFORMED),
        ("85354-9", [("8480-6", 120, "mmHg"), ("8867-4", 80, "/min")], Reason.UNKNOWN_CODE),
    ],
)
def test_normalise_rejects(code: str, components: list[tuple[str, float, str]], reason: Reason) -> None:
    result = normalise(item(code, components))
    assert isinstance(result, Rejected) and result.reason is reason


@pytest.mark.parametrize(
    ("sbp", "dbp", "ok"),
    [(120, 80, True), (300, 200, True), (301, 200, False), (40, 20, True), (39, 20, False), (90, 95, False)],
)
def test_check_plausible_bp(sbp: float, dbp: float, ok: bool) -> None:
    result = normalise(item("bp", [("sbp", sbp, "mmHg"), ("dbp", dbp, "mmHg")]))
    assert isinstance(result, Normalised)
    assert (check_plausible(result) is None) is ok


def test_check_plausible_glucose_after_conversion() -> None:
    assert check_plausible(norm("glucose", 1000, "mg/dL")) is not None  # 55.5 mmol/L
    assert check_plausible(norm("glucose", 900, "mg/dL")) is None  # 49.96 mmol/L


def test_check_not_future() -> None:
    ok = normalise(item("hr", [("hr", 70, "/min")], at=NOW + timedelta(minutes=4)))
    late = normalise(item("hr", [("hr", 70, "/min")], at=NOW + timedelta(minutes=6)))
    assert isinstance(ok, Normalised) and isinstance(late, Normalised)
    assert check_not_future(ok, NOW) is None
    rejected = check_not_future(late, NOW)
    assert rejected is not None and rejected.reason is Reason.FUTURE


def test_resolve_binding_history() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    t0 = NOW - timedelta(days=10)
    view = DeviceView(
        uuid.uuid4(), True, [(t0 + timedelta(days=5), None, bob), (t0, t0 + timedelta(days=4), alice)]
    )
    devices = {"D1": view, "OFF": DeviceView(uuid.uuid4(), False, [(t0, None, alice)])}

    def at(when: datetime, serial: str = "D1") -> Accepted | Rejected:
        result = normalise(item("hr", [("hr", 70, "/min")], at=when, serial=serial))
        assert isinstance(result, Normalised)
        return resolve(result, devices)

    first, gap, second = at(t0 + timedelta(days=1)), at(t0 + timedelta(days=4, hours=1)), at(NOW)
    assert isinstance(first, Accepted) and first.patient_id == alice
    assert isinstance(gap, Rejected) and gap.reason is Reason.UNBOUND
    assert isinstance(second, Accepted) and second.patient_id == bob
    before = at(t0 - timedelta(seconds=1))
    assert isinstance(before, Rejected) and before.reason is Reason.UNBOUND
    unknown, off = at(NOW, "NOPE"), at(NOW, "OFF")
    assert isinstance(unknown, Rejected) and unknown.reason is Reason.UNKNOWN_DEVICE
    assert isinstance(off, Rejected) and off.reason is Reason.INACTIVE_DEVICE


def test_reading_id_is_deterministic_across_time_zones() -> None:
    device = uuid.uuid4()
    shanghai = timezone(timedelta(hours=8))
    same = NOW.astimezone(shanghai)
    assert reading_id(device, "8867-4", NOW) == reading_id(device, "8867-4", same)
    assert reading_id(device, "8867-4", NOW) != reading_id(device, "8480-6", NOW)
    assert reading_id(device, "8867-4", NOW) != reading_id(device, "8867-4", NOW + timedelta(microseconds=1))
    assert reading_id(device, "8867-4", NOW) != reading_id(uuid.uuid4(), "8867-4", NOW)


def _accepted(sbp: float, dbp: float, at: datetime = NOW) -> Accepted:
    result = normalise(item("bp", [("sbp", sbp, "mmHg"), ("dbp", dbp, "mmHg")], at=at))
    assert isinstance(result, Normalised)
    return Accepted(result, uuid.UUID(int=1), uuid.UUID(int=2))


def test_panel_rows_share_panel_id() -> None:
    rows = to_rows(_accepted(128, 82), NOW, "http")
    assert [r.code for r in rows] == ["8480-6", "8462-4"]
    assert rows[0].panel_id == rows[1].panel_id == reading_id(uuid.UUID(int=1), "85354-9", NOW)
    assert [r.id for r in rows] == [reading_id(uuid.UUID(int=1), c, NOW) for c in ("8480-6", "8462-4")]


def test_deduplicate_within_submission() -> None:
    groups = [
        (0, to_rows(_accepted(128, 82), NOW, "http")),
        (1, to_rows(_accepted(128, 82), NOW, "http")),
        (2, to_rows(_accepted(130, 85, NOW + timedelta(minutes=1)), NOW, "http")),
    ]
    repeats: set[int] = set()
    rows = list(deduplicate(groups, repeats))
    assert len(rows) == 4 and repeats == {1}


def _row(code: str, value: float, unit: str) -> ReadingRow:
    return ReadingRow(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), code, value, unit, NOW, NOW, None, "http")


@pytest.mark.parametrize(
    ("code", "value", "unit", "fired"),
    [
        ("8480-6", 180, "mm[Hg]", ["bp-critical-systolic"]),
        ("8480-6", 179, "mm[Hg]", []),
        ("8462-4", 110, "mm[Hg]", ["bp-critical-diastolic"]),
        ("8462-4", 109, "mm[Hg]", []),
        ("59408-5", 89, "%", ["spo2-low"]),
        ("59408-5", 90, "%", []),
        ("14771-0", 3.9, "mmol/L", []),
        ("14771-0", 3.8, "mmol/L", ["glucose-hypo"]),
        ("14771-0", 2.9, "mmol/L", ["glucose-hypo", "glucose-hypo-level2"]),
        ("14771-0", 16.7, "mmol/L", []),
        ("14771-0", 16.8, "mmol/L", ["glucose-hyper-severe"]),
        ("8867-4", 250, "/min", []),
    ],
)
def test_evaluate_default_rules(code: str, value: float, unit: str, fired: list[str]) -> None:
    alerts = evaluate([_row(code, value, unit)], load_rules(), NOW)
    assert sorted(a["rule_id"] for a in alerts) == fired


def test_rules_are_configurable_data() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "tachy",
                    "code": "heart_rate",
                    "op": ">",
                    "threshold": 120,
                    "unit": "/min",
                    "severity": "high",
                }
            ]
        }
    )
    assert [a["severity"] for a in evaluate([_row("8867-4", 130, "/min")], rules, NOW)] == ["high"]
    with pytest.raises(ValueError, match="threshold must be in"):
        parse_rules(
            {
                "rules": [
                    {
                        "id": "x",
                        "code": "glucose",
                        "op": "<",
                        "threshold": 70,
                        "unit": "mg/dL",
                        "severity": "high",
                    }
                ]
            }
        )


def test_dead_letter_id_depends_on_payload_only() -> None:
    a = Rejected(0, "compact", {"b": 1, "a": 2}, "D1", Reason.MALFORMED, "x")
    b = Rejected(5, "compact", {"a": 2, "b": 1}, "D1", Reason.IMPLAUSIBLE, "y")
    c = Rejected(0, "compact", {"a": 3}, "D1", Reason.MALFORMED, "x")
    assert dead_letter_id(a) == dead_letter_id(b) != dead_letter_id(c)


def test_quantity_is_value_object() -> None:
    assert Quantity("8867-4", 70.0, "/min") == Quantity("8867-4", 70.0, "/min")
