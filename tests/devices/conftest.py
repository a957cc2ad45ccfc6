"""Device fixtures: the standard world plus registered devices bound to its patients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.principal import system_principal
from medloop.devices import service
from medloop.store.base import utcnow
from tests.factories import World


@dataclass
class Fleet:
    engine: Engine
    world: World
    bound_since: datetime


DEVICES = [
    # serial, kind, patient key (None: registered but never bound)
    ("BP-1", "bp_monitor", "alice"),
    ("GLU-1", "glucometer", "bob"),
    ("OX-1", "pulse_oximeter", "carol"),
    ("SCALE-1", "scale", "dan"),
    ("IDLE-1", "bp_monitor", None),
]


@pytest.fixture
def fleet(engine: Engine, world: World) -> Fleet:
    since = utcnow() - timedelta(days=30)
    admin = system_principal()
    with Session(engine, expire_on_commit=False) as s:
        for serial, kind, patient in DEVICES:
            service.register_device(s, serial, kind, model="test", manufacturer_code="HUB")
            if patient:
                service.bind(s, admin, serial, world.patients[patient].id, start_at=since)
        s.commit()
    return Fleet(engine, world, since)


def count(session: Session, model: type, *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]
