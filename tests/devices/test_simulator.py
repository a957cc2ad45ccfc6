"""The device simulator: realistic readings reach the database through the real HTTP app, and every
injected fault ends up where it should (dead letters, or a no-op for duplicates)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.devices.models import DeadLetter, Reading
from medloop.settings import Settings
from medloop.sim.devices import FaultRates, SimStats, _device, diurnal, generate, simulate
from tests.devices.conftest import count
from tests.factories import World


def test_diurnal_pattern_dips_at_night() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    night, morning = datetime(2025, 3, 1, 3, tzinfo=tz), datetime(2025, 3, 1, 10, tzinfo=tz)
    assert diurnal(night) < 0 < diurnal(morning)


def test_generate_is_reproducible_and_injects_faults() -> None:
    fleet = [_device(random.Random(i), f"D{i}", kind) for i, kind in enumerate(["bp_monitor", "glucometer"])]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    rates = FaultRates(
        duplicate=0.2, late=0.2, wrong_unit=0.05, impossible=0.05, clock_skew=0.05, unknown_device=0.05
    )
    a, b = SimStats(), SimStats()
    first = list(generate(fleet, start, 120, 60, rates, 3, ZoneInfo("UTC"), a))
    assert first == list(generate(fleet, start, 120, 60, rates, 3, ZoneInfo("UTC"), b))
    assert a.readings == 120 * 3 and set(a.faults) >= {"duplicate", "late"}
    assert len(first) == a.readings + a.faults["duplicate"]


def test_simulation_over_in_process_http(engine: Engine, world: World) -> None:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False), log_level="WARNING")
    rates = FaultRates(
        duplicate=0.1, late=0.1, wrong_unit=0.03, impossible=0.03, clock_skew=0.03, unknown_device=0.03
    )
    stats = simulate(settings, devices=4, minutes=120, interval_s=60, rates=rates, seed=5)
    bad = sum(stats.faults[k] for k in ("wrong_unit", "impossible", "clock_skew", "unknown_device"))
    with Session(engine) as s:
        assert count(s, DeadLetter) == bad
        stored_readings = stats.outcomes["stored"]
        assert stored_readings == stats.readings - bad
        assert count(s, Reading) >= stored_readings
        assert set(s.scalars(select(Reading.unit).distinct()).all()) <= {
            "mm[Hg]",
            "/min",
            "mmol/L",
            "%",
            "kg",
        }
    assert (
        0 < stats.outcomes["duplicate"] <= stats.faults["duplicate"]
    )  # a repeated bad reading is rejected again
    assert sum(stats.outcomes.values()) == stats.readings + stats.faults["duplicate"]
    again = simulate(
        settings, devices=4, minutes=1, interval_s=60, rates=FaultRates(0, 0, 0, 0, 0, 0), seed=6
    )
    assert again.outcomes["stored"] == again.readings
