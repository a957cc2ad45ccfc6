"""Figures of the region overview, for the facilities in the viewer's scope, at region, district or
facility level.

The programme figures are the pre-aggregated KPIs (`kpi_value`, written by `medloop kpi refresh`;
each indicator has its one implementation in `medloop.programs.kpi`) of the latest refreshed
month, with the months before it as trends; the page says which month and when it was refreshed.
A set of facilities is read as the fewest whole units that make it up (a region, a district, else
facilities), so a region-wide page reads one unit's rows, and counts, numerators and denominators
add up over the units while rates are recomputed from the sums; a median is shown only where it is
one unit's own. The one live figure is the count of open device alerts (indexed, a few thousand
rows at most), filtered through `patient_in_scope`.

Aggregates only: no patient-level rows leave these queries. They are cached for a short time per
scope and filter: a dashboard is looked at by many people at once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.devices.models import AlertStatus, DeviceAlert
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.programs.models import KpiValue
from medloop.web.scope import for_aggregates

TREND_MONTHS = 12
CACHE_SECONDS = 30.0
TIER_ORDER = ("tertiary_hub", "secondary", "primary", "village_clinic", "mobile_unit")
HYPERTENSION = "hypertension"
CHEST_PAIN = "chest_pain"

# The KPI rows the overview reads: indicator → programme (None: every programme, added up).
INDICATORS: dict[str, str | None] = {
    "screening_coverage": "screening",
    "enrolled": None,
    "bp_controlled": HYPERTENSION,
    "missed_visits": HYPERTENSION,
    "lost_to_follow_up": HYPERTENSION,
    "referral_completion": None,
    "door_to_balloon_median_minutes": CHEST_PAIN,
}
MEDIANS = frozenset({"door_to_balloon_median_minutes"})


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

    def add(self, programme: str, indicator: str, num: Any, den: Any, value: Any, units: int = 1) -> None:
        wanted = INDICATORS.get(indicator, "")
        if wanted is not None and wanted != programme:
            return
        if indicator == "screening_coverage":
            self.screened, self.eligible = _plus(self.screened, num), _plus(self.eligible, den)
        elif indicator == "enrolled":
            self.enrolled = _plus(self.enrolled, value)
        elif indicator == "bp_controlled":
            self.controlled, self.cohort = _plus(self.controlled, num), _plus(self.cohort, den)
        elif indicator == "missed_visits":
            self.missed_visits = _plus(self.missed_visits, num)
        elif indicator == "lost_to_follow_up":
            self.lost_to_follow_up = _plus(self.lost_to_follow_up, num)
        elif indicator == "referral_completion":
            self.referrals_completed = _plus(self.referrals_completed, num)
            self.referrals = _plus(self.referrals, den)
        elif indicator in MEDIANS and units == 1 and value is not None:
            self.door_to_balloon_median = float(value)

    @property
    def coverage(self) -> float | None:
        return _rate(self.screened, self.eligible)

    @property
    def bp_control(self) -> float | None:
        return _rate(self.controlled, self.cohort)

    @property
    def referral_completion(self) -> float | None:
        return _rate(self.referrals_completed, self.referrals)


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
    open_alerts: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "tier": self.tier,
            "district": self.district_code,
            "lat": self.latitude,
            "lon": self.longitude,
            "eligible": self.kpis.eligible,
            "coverage": self.kpis.coverage,
            "bp_control": self.kpis.bp_control,
            "open_alerts": self.open_alerts,
        }


@dataclass
class Overview:
    level: str  # region | district | facility
    district: str | None
    facility: FacilityFigures | None
    facilities: list[FacilityFigures]
    districts: list[dict[str, Any]]
    totals: Kpis  # of the latest period
    open_alerts: int
    period: date | None  # the KPIs' month (None: no KPIs computed yet)
    refreshed_at: datetime | None
    trends: dict[str, list[Any]]


# --- which facilities, and which units make them up ---------------------------------------------


def visible_facilities(session: Session, principal: Principal) -> list[Organisation]:
    stmt = select(Organisation).where(Organisation.active.is_(True))
    if principal.scope is not None:
        stmt = stmt.where(Organisation.id.in_(list(principal.scope)))
    rows = list(session.scalars(stmt).all())
    rank = {t: i for i, t in enumerate(TIER_ORDER)}
    return sorted(rows, key=lambda o: (rank.get(o.tier, 99), o.code))


def whole_units(session: Session, orgs: list[Organisation]) -> list[tuple[str, str]]:
    """The fewest KPI units (level, unit) that make up exactly these facilities: a region (city)
    or a district when every organisation in it is among them, else the facilities themselves."""
    codes = {o.code for o in orgs}
    cities = {o.city_code for o in orgs}
    members: dict[tuple[str, str], set[str]] = {}
    for code, district, city in session.execute(
        select(Organisation.code, Organisation.district_code, Organisation.city_code).where(
            Organisation.city_code.in_(cities)
        )
    ).all():
        members.setdefault(("region", city), set()).add(code)
        members.setdefault(("district", district), set()).add(code)
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
    period = session.scalar(select(func.max(KpiValue.period)))
    if period is None:
        return None, None
    refreshed = session.scalar(select(KpiValue.refreshed_at).where(KpiValue.period == period).limit(1))
    return period, refreshed


def months_back(period: date, n: int) -> list[date]:
    index = period.year * 12 + period.month - 1
    return [date((index - k) // 12, (index - k) % 12 + 1, 1) for k in range(n - 1, -1, -1)]


def facility_kpis(session: Session, period: date, codes: list[str]) -> dict[str, Kpis]:
    """Each facility's figures of the month."""
    out: dict[str, Kpis] = {}
    if not codes:
        return out
    rows = session.execute(
        select(
            KpiValue.unit,
            KpiValue.programme,
            KpiValue.indicator,
            KpiValue.numerator,
            KpiValue.denominator,
            KpiValue.value,
        ).where(
            KpiValue.period == period,
            KpiValue.level == "facility",
            KpiValue.unit.in_(codes),
            KpiValue.indicator.in_(list(INDICATORS)),
        )
    ).all()
    for unit, programme, indicator, num, den, value in rows:
        out.setdefault(unit, Kpis()).add(programme, indicator, num, den, value)
    return out


def monthly_kpis(session: Session, months: list[date], units: list[tuple[str, str]]) -> dict[date, Kpis]:
    """The units' figures added up, per month."""
    out = {m: Kpis() for m in months}
    if not units:
        return out
    rows = session.execute(
        select(
            KpiValue.period,
            KpiValue.programme,
            KpiValue.indicator,
            func.sum(KpiValue.numerator),
            func.sum(KpiValue.denominator),
            func.sum(KpiValue.value),
        )
        .where(
            KpiValue.period >= months[0],
            KpiValue.period <= months[-1],
            KpiValue.indicator.in_(list(INDICATORS)),
            _in_units(units),
        )
        .group_by(KpiValue.period, KpiValue.programme, KpiValue.indicator)
    ).all()
    for period, programme, indicator, num, den, value in rows:
        out[period].add(programme, indicator, num, den, value, units=len(units))
    return out


def trends(monthly: dict[date, Kpis]) -> dict[str, list[Any]]:
    def pct(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    months = sorted(monthly)
    return {
        "months": [f"{m:%Y-%m}" for m in months],
        "enrolled": [monthly[m].enrolled for m in months],
        "missed_visits": [monthly[m].missed_visits for m in months],
        "lost_to_follow_up": [monthly[m].lost_to_follow_up for m in months],
        "bp_control": [pct(monthly[m].bp_control) for m in months],
        "coverage": [pct(monthly[m].coverage) for m in months],
    }


# --- live: open device alerts --------------------------------------------------------------------


def open_alert_counts(
    session: Session, principal: Principal, facility_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not facility_ids:
        return {}
    home = Patient.home_facility_id
    rows = session.execute(
        select(home, func.count())
        .select_from(DeviceAlert)
        .join(Patient, Patient.id == DeviceAlert.patient_id)
        .where(
            DeviceAlert.status == AlertStatus.OPEN,
            home.in_(facility_ids),
            patient_in_scope(principal, Patient.id),
        )
        .group_by(home)
    ).all()
    return {facility: int(n) for facility, n in rows}


def district_rows(facilities: list[FacilityFigures]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in facilities:
        d = out.setdefault(f.district_code, {"code": f.district_code, "facilities": 0, "open_alerts": 0})
        kpis = d.setdefault("kpis", Kpis())
        d["facilities"] += 1
        d["open_alerts"] += f.open_alerts
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
    orgs = visible_facilities(session, principal)
    level = "region"
    if facility_code:
        orgs = [o for o in orgs if o.code == facility_code]
        level = "facility"
    elif district:
        orgs = [o for o in orgs if o.district_code == district]
        level = "district"
    period, refreshed = latest_period(session)
    per_facility = facility_kpis(session, period, [o.code for o in orgs]) if period else {}
    alerts = open_alert_counts(session, for_aggregates(session, principal), [o.id for o in orgs])
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
            alerts.get(o.id, 0),
        )
        for o in orgs
    ]
    months = months_back(period, TREND_MONTHS) if period else []
    monthly = monthly_kpis(session, months, whole_units(session, orgs)) if period and orgs else {}
    return Overview(
        level=level,
        district=district
        if level == "district"
        else (orgs[0].district_code if level == "facility" and orgs else None),
        facility=figures[0] if level == "facility" and figures else None,
        facilities=figures,
        districts=district_rows(figures),
        totals=monthly[period] if period and monthly else Kpis(),
        open_alerts=sum(f.open_alerts for f in figures),
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
