"""Figures of the region overview, for the facilities in the viewer's scope, at region, district or
facility level.

The programme figures are the pre-aggregated KPIs (`kpi_value`, written by `medloop kpi refresh`;
each indicator has its one implementation in `medloop.programs.kpi`) of the latest refreshed
month, with the months before it as trends; the page says which month and when it was refreshed.
A set of facilities is read as the fewest whole units that make it up (a region, a district, else
facilities), so a region-wide page reads one unit's rows, and counts, numerators and denominators
add up over the units while rates are recomputed from the sums; a median is shown only where it is
one unit's own. The one live figure is a facility's count of open device alerts (at facility
level: index lookups from its patients), filtered through `patient_in_scope`.

Aggregates only: no patient-level rows leave these queries. They are cached for a short time per
scope and filter: a dashboard is looked at by many people at once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import for_reads, patient_in_scope
from medloop.devices.models import AlertStatus, DeviceAlert
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.programs.models import KpiValue

TREND_MONTHS = 12
CACHE_SECONDS = 30.0
TIER_ORDER = ("tertiary_hub", "secondary", "primary", "village_clinic", "mobile_unit")
HYPERTENSION = "hypertension"
CHEST_PAIN = "chest_pain"

# The overview's KPI figures, each the sum of one part of one indicator's rows (programme None:
# every programme's): field of `Kpis` → (indicator, part, programme).
FIGURES: dict[str, tuple[str, str, str | None]] = {
    "eligible": ("screening_coverage", "denominator", "screening"),
    "screened": ("screening_coverage", "numerator", "screening"),
    "enrolled": ("enrolled", "value", None),
    "cohort": ("bp_controlled", "denominator", HYPERTENSION),
    "controlled": ("bp_controlled", "numerator", HYPERTENSION),
    "missed_visits": ("missed_visits", "numerator", HYPERTENSION),
    "lost_to_follow_up": ("lost_to_follow_up", "numerator", HYPERTENSION),
    "referrals": ("referral_completion", "denominator", None),
    "referrals_completed": ("referral_completion", "numerator", None),
}
# A median does not add up: it is shown where the figures are one unit's own.
MEDIAN = ("door_to_balloon_median_minutes", CHEST_PAIN)
INDICATORS = sorted({i for i, _, _ in FIGURES.values()} | {MEDIAN[0]})
MANY_UNITS = 200


@dataclass
class Kpis:
    """The overview's KPI figures of one facility, or of a set of them (a page's totals, a month)."""

    eligible: float | None = None  # residents eligible for screening (its denominator)
    screened: float | None = None
    enrolled: float | None = None  # active enrolments, every programme
    cohort: float | None = None  # hypertension: the control cohort
    controlled: float | None = None
    missed_visits: float | None = None
    lost_to_follow_up: float | None = None
    referrals: float | None = None  # made in the month
    referrals_completed: float | None = None
    door_to_balloon_median: float | None = None  # minutes

    @property
    def coverage(self) -> float | None:
        return _rate(self.screened, self.eligible)

    @property
    def bp_control(self) -> float | None:
        return _rate(self.controlled, self.cohort)

    @property
    def referral_completion(self) -> float | None:
        return _rate(self.referrals_completed, self.referrals)


def _figures() -> list[ColumnElement[Any]]:
    """The KPI rows pivoted into the fields of `Kpis`, in order (one row per group)."""

    def of(indicator: str, programme: str | None) -> ColumnElement[bool]:
        found = KpiValue.indicator == indicator
        return found if programme is None else and_(found, KpiValue.programme == programme)

    sums = [func.sum(case((of(i, p), getattr(KpiValue, part)))) for i, part, p in FIGURES.values()]
    return [*sums, func.max(case((of(*MEDIAN), KpiValue.value)))]


def _kpis(row: Sequence[Any], one_unit: bool) -> Kpis:
    values = [None if v is None else float(v) for v in row]
    return Kpis(
        **dict(zip(FIGURES, values, strict=False)), door_to_balloon_median=values[-1] if one_unit else None
    )


def _plus(a: float | None, b: Any) -> float | None:
    return a if b is None else (a or 0.0) + float(b)


def _rate(num: float | None, den: float | None) -> float | None:
    return None if not den else (num or 0.0) / den


@dataclass
class FacilityFigures:
    id: uuid.UUID
    code: str
    name: str
    tier: str
    district_code: str
    latitude: float
    longitude: float
    kpis: Kpis = field(default_factory=Kpis)
    open_alerts: int | None = None  # live, at facility level only

    def as_json(self) -> dict[str, Any]:
        """What the map draws (a region has a thousand facilities or more: keep it short)."""
        return {
            "code": self.code,
            "name": self.name,
            "lat": round(self.latitude, 5),
            "lon": round(self.longitude, 5),
            "eligible": self.kpis.eligible,
            "coverage": _round(self.kpis.coverage),
            "bp_control": _round(self.kpis.bp_control),
        }


def _round(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 4)


@dataclass
class Overview:
    level: str  # region | district | facility
    district: str | None
    facility: FacilityFigures | None
    facilities: list[FacilityFigures]
    districts: list[dict[str, Any]]
    totals: Kpis  # of the latest period
    period: date | None  # the KPIs' month (None: no KPIs computed yet)
    refreshed_at: datetime | None
    trends: dict[str, list[Any]]


# --- which facilities, and which units make them up ---------------------------------------------


@dataclass(frozen=True)
class Org:
    id: uuid.UUID
    code: str
    name: str
    tier: str
    district_code: str
    city_code: str
    latitude: float
    longitude: float
    active: bool


def organisations(session: Session) -> list[Org]:
    """Every organisation (a region has about one per 800 residents), in display order."""
    rows = session.execute(
        select(
            Organisation.id,
            Organisation.code,
            Organisation.name,
            Organisation.tier,
            Organisation.district_code,
            Organisation.city_code,
            Organisation.latitude,
            Organisation.longitude,
            Organisation.active,
        )
    ).all()
    rank = {t: i for i, t in enumerate(TIER_ORDER)}
    return sorted((Org(*r) for r in rows), key=lambda o: (rank.get(o.tier, 99), o.code))


def visible(principal: Principal, orgs: list[Org]) -> list[Org]:
    return [o for o in orgs if o.active and (principal.scope is None or o.id in principal.scope)]


def whole_units(every: list[Org], chosen: list[Org]) -> list[tuple[str, str]]:
    """The fewest KPI units (level, unit) that make up exactly the chosen facilities: a region
    (city) or a district when every organisation in it is chosen, else the facilities themselves."""
    codes = {o.code for o in chosen}
    members: dict[tuple[str, str], set[str]] = {}
    for o in every:
        members.setdefault(("region", o.city_code), set()).add(o.code)
        members.setdefault(("district", o.district_code), set()).add(o.code)
    units: list[tuple[str, str]] = []
    covered: set[str] = set()
    for level in ("region", "district"):
        for key, inside in sorted(members.items()):
            if key[0] == level and inside <= codes and not inside & covered:
                units.append(key)
                covered |= inside
    units += [("facility", code) for code in sorted(codes - covered)]
    return units


def _in_units(units: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    by_level: dict[str, list[str]] = {}
    for level, unit in units:
        by_level.setdefault(level, []).append(unit)
    return or_(*(and_(KpiValue.level == lvl, KpiValue.unit.in_(u)) for lvl, u in by_level.items()))


# --- the KPIs ------------------------------------------------------------------------------------


def latest_period(session: Session) -> tuple[date | None, datetime | None]:
    """The newest month with KPIs, and when it was refreshed."""
    row = session.execute(
        select(KpiValue.period, KpiValue.refreshed_at).order_by(KpiValue.period.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else (None, None)


def months_back(period: date, n: int) -> list[date]:
    index = period.year * 12 + period.month - 1
    return [date((index - k) // 12, (index - k) % 12 + 1, 1) for k in range(n - 1, -1, -1)]


def facility_kpis(session: Session, period: date, codes: list[str]) -> dict[str, Kpis]:
    """Each facility's figures of the month. Region-wide (more than MANY_UNITS facilities) every
    facility of the month is read and the others dropped here, rather than binding a parameter
    per facility."""
    if not codes:
        return {}
    stmt = (
        select(KpiValue.unit, *_figures())
        .where(KpiValue.period == period, KpiValue.level == "facility", KpiValue.indicator.in_(INDICATORS))
        .group_by(KpiValue.unit)
    )
    if len(codes) <= MANY_UNITS:
        stmt = stmt.where(KpiValue.unit.in_(codes))
    wanted = set(codes)
    rows = session.connection().execute(stmt).all()
    return {row[0]: _kpis(row[1:], True) for row in rows if row[0] in wanted}


def monthly_kpis(session: Session, months: list[date], units: list[tuple[str, str]]) -> dict[date, Kpis]:
    """The units' figures added up, per month."""
    out = {m: Kpis() for m in months}
    if not units:
        return out
    rows = session.connection().execute(
        select(KpiValue.period, *_figures())
        .where(KpiValue.period.in_(months), _in_units(units), KpiValue.indicator.in_(INDICATORS))
        .group_by(KpiValue.period)
    )
    for row in rows.all():
        out[row[0]] = _kpis(row[1:], len(units) == 1)
    return out


def trends(monthly: dict[date, Kpis]) -> dict[str, list[Any]]:
    months = sorted(monthly)
    return {
        "months": [f"{m:%Y-%m}" for m in months],
        "enrolled": [monthly[m].enrolled for m in months],
        "missed_visits": [monthly[m].missed_visits for m in months],
        "lost_to_follow_up": [monthly[m].lost_to_follow_up for m in months],
        "bp_control": [_round(monthly[m].bp_control) for m in months],
        "coverage": [_round(monthly[m].coverage) for m in months],
    }


# --- live: a facility's open device alerts ------------------------------------------------------


def open_alert_count(session: Session, principal: Principal, facility_id: uuid.UUID) -> int:
    """Open device alerts of a facility's patients (its patients by their home, then their alerts:
    index lookups). Region- and district-wide, alerts are not counted live (there is no alert KPI)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(DeviceAlert)
            .join(Patient, Patient.id == DeviceAlert.patient_id)
            .where(
                DeviceAlert.status == AlertStatus.OPEN,
                Patient.home_facility_id == facility_id,
                patient_in_scope(principal, Patient.id),
            )
        )
        or 0
    )


def district_rows(facilities: list[FacilityFigures]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in facilities:
        d = out.setdefault(f.district_code, {"code": f.district_code, "facilities": 0, "kpis": Kpis()})
        kpis = d["kpis"]
        d["facilities"] += 1
        k = f.kpis
        kpis.eligible, kpis.screened = _plus(kpis.eligible, k.eligible), _plus(kpis.screened, k.screened)
        kpis.cohort, kpis.controlled = _plus(kpis.cohort, k.cohort), _plus(kpis.controlled, k.controlled)
        kpis.lost_to_follow_up = _plus(kpis.lost_to_follow_up, k.lost_to_follow_up)
    return sorted(out.values(), key=lambda d: d["code"])


def build_overview(
    session: Session,
    principal: Principal,
    *,
    district: str | None = None,
    facility_code: str | None = None,
) -> Overview:
    every = organisations(session)
    orgs = visible(principal, every)
    level = "region"
    if facility_code:
        orgs = [o for o in orgs if o.code == facility_code]
        level = "facility"
    elif district:
        orgs = [o for o in orgs if o.district_code == district]
        level = "district"
    period, refreshed = latest_period(session)
    per_facility = facility_kpis(session, period, [o.code for o in orgs]) if period else {}
    figures = [
        FacilityFigures(
            o.id,
            o.code,
            o.name,
            o.tier,
            o.district_code,
            o.latitude,
            o.longitude,
            per_facility.get(o.code, Kpis()),
        )
        for o in orgs
    ]
    facility = figures[0] if level == "facility" and figures else None
    if facility is not None:
        facility.open_alerts = open_alert_count(session, for_reads(session, principal), facility.id)
    months = months_back(period, TREND_MONTHS) if period else []
    monthly = monthly_kpis(session, months, whole_units(every, orgs)) if period and orgs else {}
    return Overview(
        level=level,
        district=district
        if level == "district"
        else (orgs[0].district_code if level == "facility" and orgs else None),
        facility=facility,
        facilities=figures,
        districts=district_rows(figures),
        totals=monthly[period] if period and monthly else Kpis(),
        period=period,
        refreshed_at=refreshed,
        trends=trends(monthly),
    )


T = TypeVar("T")


class TtlCache:
    """A small thread-safe cache of computed figures, each kept for `seconds`."""

    def __init__(self, seconds: float, max_entries: int = 256) -> None:
        self.seconds, self.max_entries = seconds, max_entries
        self._items: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.seconds:
            value: T = hit[1]
            return value
        value = compute()
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


overview_cache = TtlCache(CACHE_SECONDS)


@dataclass(frozen=True)
class AlertRow:
    patient_id: uuid.UUID
    patient_name: str
    rule_id: str
    severity: str
    value: float
    unit: str
    created_at: datetime


def open_alerts(
    session: Session, principal: Principal, facility_id: uuid.UUID, limit: int = 25
) -> list[AlertRow]:
    """The newest open device alerts of a facility's patients (an audited search)."""
    rows = session.execute(
        select(
            DeviceAlert.patient_id,
            Patient.name,
            DeviceAlert.rule_id,
            DeviceAlert.severity,
            DeviceAlert.value,
            DeviceAlert.unit,
            DeviceAlert.created_at,
        )
        .join(Patient, Patient.id == DeviceAlert.patient_id)
        .where(
            Patient.home_facility_id == facility_id,
            patient_in_scope(principal, Patient.id),
            DeviceAlert.status == AlertStatus.OPEN,
        )
        .order_by(DeviceAlert.created_at.desc(), DeviceAlert.id)
        .limit(limit)
    ).all()
    found = [AlertRow(*r) for r in rows]
    if found:
        record_access(
            session,
            principal,
            "search",
            "DeviceAlert",
            [r.patient_id for r in found],
            detail={"view": "overview"},
        )
    return found
