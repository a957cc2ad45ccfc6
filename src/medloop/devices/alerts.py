"""Alert rules as data (data/alert_rules.yaml, or the file named by MEDLOOP_DEVICE_ALERT_RULES)."""

from __future__ import annotations

import operator
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medloop.clinical.codes import measure
from medloop.devices.models import AlertStatus
from medloop.devices.types import ReadingRow

RULES_ENV = "MEDLOOP_DEVICE_ALERT_RULES"
ALERT_NAMESPACE = uuid.UUID("6a4f0f8e-93c1-5d0c-9a53-0c5b2f1f7a10")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class AlertRule:
    id: str
    code: str
    op: str
    threshold: float
    severity: str

    def fires(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)


def parse_rules(doc: dict[str, Any]) -> tuple[AlertRule, ...]:
    rules = []
    for spec in doc["rules"]:
        if spec["op"] not in OPERATORS:
            raise ValueError(f"alert rule {spec['id']}: unknown operator {spec['op']!r}")
        found = measure(str(spec["code"]))
        if found.unit != spec["unit"]:
            raise ValueError(f"alert rule {spec['id']}: threshold must be in {found.unit}, the stored unit")
        rules.append(
            AlertRule(
                str(spec["id"]), found.loinc, str(spec["op"]), float(spec["threshold"]), str(spec["severity"])
            )
        )
    return tuple(rules)


@cache
def load_rules(path: str | None = None) -> tuple[AlertRule, ...]:
    """The configured rules: `path`, else $MEDLOOP_DEVICE_ALERT_RULES, else the packaged file."""
    path = path or os.environ.get(RULES_ENV)
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = (
            resources.files("medloop.devices")
            .joinpath("data", "alert_rules.yaml")
            .read_text(encoding="utf-8")
        )
    return parse_rules(yaml.safe_load(text))


def alert_id(reading_id: uuid.UUID, rule_id: str) -> uuid.UUID:
    return uuid.uuid5(ALERT_NAMESPACE, f"{reading_id}|{rule_id}")


def evaluate(rows: Iterable[ReadingRow], rules: Iterable[AlertRule], now: datetime) -> list[dict[str, Any]]:
    """Stage *evaluate*: alert rows for the stored reading rows that trip a rule."""
    by_code: dict[str, list[AlertRule]] = {}
    for rule in rules:
        by_code.setdefault(rule.code, []).append(rule)
    alerts = []
    for row in rows:
        for rule in by_code.get(row.code, ()):
            if rule.fires(row.value):
                alerts.append(
                    {
                        "id": alert_id(row.id, rule.id),
                        "patient_id": row.patient_id,
                        "reading_id": row.id,
                        "rule_id": rule.id,
                        "code": row.code,
                        "value": row.value,
                        "unit": row.unit,
                        "severity": rule.severity,
                        "status": AlertStatus.OPEN.value,
                        "created_at": now,
                    }
                )
    return alerts
