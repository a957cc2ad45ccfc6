"""Helpers the parsers share: instants, numbers, and building rejections."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from medloop.devices.types import Reason, Rejected


class PayloadError(ValueError):
    """The document as a whole is not a payload medloop understands."""


class ItemError(ValueError):
    """One reading is malformed; carries the reason code."""

    def __init__(self, detail: str, reason: Reason = Reason.MALFORMED) -> None:
        super().__init__(detail)
        self.reason = reason


def instant(value: Any, where: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset (a naive time is ambiguous, so it is refused)."""
    if not isinstance(value, str):
        raise ItemError(f"{where} must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ItemError(f"{where} is not an ISO 8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ItemError(f"{where} needs a UTC offset (e.g. 'Z' or '+08:00')")
    return parsed


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ItemError(f"{where} must be a number")
    result = float(value)
    if not math.isfinite(result):
        raise ItemError(f"{where} must be a finite number")
    return result


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ItemError(f"{where} must be a non-empty string")
    return value.strip()


def rejected(index: int, fmt: str, raw: Any, serial: str | None, error: ItemError) -> Rejected:
    return Rejected(
        index, fmt, raw if isinstance(raw, dict) else {"value": raw}, serial, error.reason, str(error)
    )
