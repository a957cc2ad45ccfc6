"""Who should go where next after screening, routed to the nearest facility with the capability.

Rules: high China-PAR risk → primary-care follow-up; eligible for lung screening → LDCT; COPD-SQ
positive → spirometry; CDRS high → fasting glucose / HbA1c test at a lab. Routing uses the same
great-circle distance and tie-break (lowest facility code) as `Network.nearest`, vectorised over
people with NumPy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from medloop.network.routing import EARTH_RADIUS_KM, Facility, Network
from medloop.screening.engine import Plan


@dataclass(frozen=True)
class Rule:
    model: str
    category: str
    capability: str
    action: str


RULES = (
    Rule("china_par", "high", "primary_care", "ascvd_follow_up"),
    Rule("lung_screening", "eligible", "ldct", "ldct_screening"),
    Rule("lung_screening_uspstf", "eligible", "ldct", "ldct_screening"),
    Rule("copd_sq", "high", "spirometry", "spirometry"),
    Rule("cdrs", "high", "lab", "fpg_hba1c_test"),
)

_CHUNK = 65_536  # people per distance matrix block


def nearest(
    facilities: list[Facility], latitude: np.ndarray, longitude: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index into `facilities` (sorted by code) of the nearest one to each point, and its distance
    in km; -1 and NaN where the point is unknown or there is no facility."""
    n = latitude.shape[0]
    index = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan)
    known = ~(np.isnan(latitude) | np.isnan(longitude))
    if not facilities or not known.any():
        return index, distance
    f_lat = np.radians([f.latitude for f in facilities])
    f_lon = np.radians([f.longitude for f in facilities])
    rows = np.flatnonzero(known)
    for start in range(0, rows.size, _CHUNK):
        part = rows[start : start + _CHUNK]
        p1 = np.radians(latitude[part])[:, None]
        l1 = np.radians(longitude[part])[:, None]
        a = np.sin((f_lat - p1) / 2) ** 2 + np.cos(p1) * np.cos(f_lat) * np.sin((f_lon - l1) / 2) ** 2
        d = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))
        best = d.argmin(axis=1)  # first minimum: lowest code among equally near facilities
        index[part] = best
        distance[part] = d[np.arange(part.size), best]
    return index, distance


class Referrals:
    """Turns result batches into referral rows: key, action, capability, model, category and, with a
    care network, the nearest facility (code, name, distance)."""

    def __init__(self, plan: Plan, network: Network | None) -> None:
        self.key = plan.key
        self.rules = [r for r in RULES if r.model in plan.model_names]
        self.network = network
        self.capable = {
            r.capability: sorted(
                (f for f in network.facilities if r.capability in f.capabilities), key=lambda f: f.code
            )
            if network
            else []
            for r in self.rules
        }
        self.routable = {"latitude", "longitude"} <= set(plan.keep)

    def schema(self) -> dict[str, pl.DataType]:
        return {
            self.key: pl.String(),
            "action": pl.String(),
            "capability": pl.String(),
            "model": pl.String(),
            "category": pl.String(),
            "facility_code": pl.String(),
            "facility_name": pl.String(),
            "distance_km": pl.Float64(),
        }

    def of(self, results: pl.DataFrame) -> pl.DataFrame:
        parts = [self._rule(rule, results) for rule in self.rules]
        frame = pl.concat(parts) if parts else pl.DataFrame(schema=self.schema())
        # One referral per person and capability (both lung-screening models may send to LDCT).
        return frame.unique(subset=[self.key, "capability"], keep="first", maintain_order=True)

    def _rule(self, rule: Rule, results: pl.DataFrame) -> pl.DataFrame:
        who = results.filter(pl.col(f"{rule.model}_category") == rule.category)
        facilities = self.capable[rule.capability]
        codes: list[str | None] = [None] * who.height
        names: list[str | None] = [None] * who.height
        km = np.full(who.height, np.nan)
        if self.routable and facilities and who.height:
            lat = who.get_column("latitude").cast(pl.Float64).fill_null(np.nan).to_numpy()
            lon = who.get_column("longitude").cast(pl.Float64).fill_null(np.nan).to_numpy()
            index, km = nearest(facilities, lat, lon)
            codes = [facilities[i].code if i >= 0 else None for i in index]
            names = [facilities[i].name if i >= 0 else None for i in index]
        return pl.DataFrame(
            {
                self.key: who.get_column(self.key).cast(pl.String),
                "action": [rule.action] * who.height,
                "capability": [rule.capability] * who.height,
                "model": [rule.model] * who.height,
                "category": [rule.category] * who.height,
                "facility_code": codes,
                "facility_name": names,
                "distance_km": pl.Series(km, dtype=pl.Float64).fill_nan(None),
            },
            schema=self.schema(),
        )
