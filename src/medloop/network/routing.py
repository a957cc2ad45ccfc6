"""Referral routing: the nearest active organisation (great-circle distance) that has a capability."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.network.models import Organisation

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


@dataclass(frozen=True)
class Facility:
    id: uuid.UUID
    code: str
    name: str
    tier: str
    latitude: float
    longitude: float
    capabilities: frozenset[str]


@dataclass(frozen=True)
class Route:
    facility: Facility
    distance_km: float


class Network:
    """An in-memory snapshot of the active facilities, for routing many people quickly."""

    def __init__(self, facilities: Iterable[Facility]) -> None:
        self.facilities = tuple(facilities)

    @classmethod
    def load(cls, session: Session) -> Network:
        rows = session.scalars(select(Organisation).where(Organisation.active.is_(True))).all()
        return cls(
            Facility(o.id, o.code, o.name, o.tier, o.latitude, o.longitude, frozenset(o.capabilities or ()))
            for o in rows
        )

    def nearest(self, latitude: float, longitude: float, capability: str) -> Route | None:
        best: Route | None = None
        for f in self.facilities:
            if capability not in f.capabilities:
                continue
            d = haversine_km(latitude, longitude, f.latitude, f.longitude)
            if (
                best is None
                or d < best.distance_km
                or (d == best.distance_km and f.code < best.facility.code)
            ):
                best = Route(f, d)
        return best

    def by_id(self, facility_id: uuid.UUID) -> Facility | None:
        return next((f for f in self.facilities if f.id == facility_id), None)
