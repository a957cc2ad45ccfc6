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
        """The referrals of a batch of results: rule by rule, each in input order. One referral per
        person and capability: a rule skips the people an earlier rule already sends there (both
        lung-screening models may send to LDCT)."""
        parts = []
        referred: dict[str, pl.Expr] = {}  # capability → who an earlier rule sends there
        for rule in self.rules:
            hit = pl.col(f"{rule.model}_category") == rule.category
            earlier = referred.get(rule.capability)
            referred[rule.capability] = hit if earlier is None else earlier | hit
            who = results.filter(hit if earlier is None else hit & ~earlier)
            parts.append(self._rule(rule, who))
        return pl.concat(parts) if parts else pl.DataFrame(schema=self.schema())

    def _rule(self, rule: Rule, who: pl.DataFrame) -> pl.DataFrame:
        facilities = self.capable[rule.capability]
        facility: list[pl.Expr] = [pl.lit(None, dtype=pl.String)] * 2
        distance: pl.Expr = pl.lit(None, dtype=pl.Float64)
        if self.routable and facilities and who.height:
            lat = who.get_column("latitude").cast(pl.Float64).fill_null(np.nan).to_numpy()
            lon = who.get_column("longitude").cast(pl.Float64).fill_null(np.nan).to_numpy()
            index, km = nearest(facilities, lat, lon)
            at = pl.lit(pl.Series(index))
            at = pl.when(at >= 0).then(at)  # null where the place is unknown
            facility = [
                pl.lit(pl.Series([getattr(f, attribute) for f in facilities], dtype=pl.String)).gather(at)
                for attribute in ("code", "name")
            ]
            distance = pl.lit(pl.Series(km, dtype=pl.Float64)).fill_nan(None)
        return who.select(
            pl.col(self.key).cast(pl.String),
            pl.lit(rule.action).alias("action"),
            pl.lit(rule.capability).alias("capability"),
            pl.lit(rule.model).alias("model"),
            pl.lit(rule.category).alias("category"),
            facility[0].alias("facility_code"),
            facility[1].alias("facility_name"),
            distance.alias("distance_km"),
        )
