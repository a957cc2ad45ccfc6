"""Plausibility ranges (inclusive at both ends) and the systolic > diastolic relation."""

from __future__ import annotations

import pytest

from medloop.clinical.plausibility import check_panel, check_value, rules

BOUNDARIES = [
    ("8480-6", 40, 300),
    ("8462-4", 20, 200),
    ("8867-4", 20, 300),
    ("59408-5", 50, 100),
    ("14771-0", 0.5, 50),
]


@pytest.mark.parametrize(("code", "low", "high"), BOUNDARIES)
def test_range_boundaries(code: str, low: float, high: float) -> None:
    step = 0.01
    assert check_value(code, low) is None
    assert check_value(code, high) is None
    assert check_value(code, low - step) is not None
    assert check_value(code, high + step) is not None


def test_ranges_are_data_with_source() -> None:
    for rng in rules().ranges.values():
        assert rng.source and isinstance(rng.confirmed, bool)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite(value: float) -> None:
    assert check_value("29463-7", value) is not None


def test_code_without_range_passes_finite_values() -> None:
    assert check_value("29463-7", 70.0) is None
    assert check_value("29463-7", 0.0) is None


def test_negative_values_are_implausible() -> None:
    assert check_value("29463-7", -0.1) is not None


@pytest.mark.parametrize(
    ("sbp", "dbp", "ok"),
    [(120, 80, True), (81, 80, True), (80, 80, False), (70, 80, False), (301, 80, False), (120, 19, False)],
)
def test_panel(sbp: float, dbp: float, ok: bool) -> None:
    assert (check_panel({"8480-6": sbp, "8462-4": dbp}) is None) is ok
