"""Helpers for programme tests: times relative to a fixed start, and events enriched by the clinical
models exactly as the service stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from medloop.programs.derive import derive
from medloop.programs.engine import Event

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(days: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


def event(event_id: str, kind: str, when: datetime, **payload: Any) -> Event:
    """An engine event whose payload carries the clinical models' results (as stored)."""
    data = dict(payload)
    derive([kind], [data])
    return Event(event_id, kind, when, data)


def visit(event_id: str, days: float, sbp: float, dbp: float, **more: Any) -> Event:
    return event(event_id, "visit", at(days), sbp=sbp, dbp=dbp, **more)
