"""Figures of the region overview: per facility (residents, screening coverage, BP control, open
alerts, bound devices, and the programme KPIs once programmes record them) and monthly trends,
for the facilities in the viewer's scope, at region, district or facility level.

Aggregates only (no patient-level rows leave these queries), every one filtered through
`patient_in_scope`. They are cached for a short time per scope and filter: a dashboard is looked
at by many people at once and its figures move by the minute, not by the request."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import ColumnElement, Executable, and_, case, distinct, func, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.devices.models import AlertStatus, DeviceAlert, DeviceBinding, Reading
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow

SYSTOLIC, DIASTOLIC, GLUCOSE = "8480-6", "8462-4", "14771-0"
TREND_MONTHS = 12
CACHE_SECONDS = 30.0
TIER_ORDER = ("tertiary_hub", "secondary", "primary", "village_clinic", "mobile_unit")


@cache
def targets() -> dict[str, Any]:
    with (Path(__file__).parent / "data" / "targets.yaml").open(encoding="utf-8") as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return doc


@dataclass
class FacilityFigures:
    id: uuid.UUID
    code: str
    name: str
    tier: str
    district_code: str
    latitude: float
    longitude: float
    residents: int = 0
    screened: int = 0
    bp_measured: int = 0
    bp_controlled: int = 0
    open_alerts: int = 0
    devices: int = 0
    programme: dict[str, float | int | None] = field(default_factory=dict)

    @property
    def coverage(self) -> float | None:
        return self.screened / self.residents if self.residents else None

    @property
    def bp_control(self) -> float | None:
        return self.bp_controlled / self.bp_measured if self.bp_measured else None

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "tier": self.tier,
            "district": self.district_code,
            "lat": self.latitude,
            "lon": self.longitude,
            "residents": self.residents,
            "coverage": self.coverage,
            "bp_control": self.bp_control,
            "open_alerts": self.open_alerts,
        }


@dataclass
class Overview:
    level: str  # region | district | facility
    district: str | None
    facility: FacilityFigures | None
    facilities: list[FacilityFigures]
    districts: list[dict[str, Any]]
    trends: dict[str, list[Any]]
    computed_at: datetime

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.facilities)

    @property
    def coverage(self) -> float | None:
        residents = self.total("residents")
        return self.total("screened") / residents if residents else None

    @property
    def bp_control(self) -> float | None:
        measured = self.total("bp_measured")
        return self.total("bp_controlled") / measured if measured else None


def visible_facilities(session: Session, principal: Principal) -> list[Organisation]:
    stmt = select(Organisation).where(Organisation.active.is_(True))
    if principal.scope is not None:
        stmt = stmt.where(Organisation.id.in_(list(principal.scope)))
    rows = list(session.scalars(stmt).all())
    rank = {t: i for i, t in enumerate(TIER_ORDER)}
    return sorted(rows, key=lambda o: (rank.get(o.tier, 99), o.code))


def _by_facility(session: Session, stmt: Executable) -> dict[uuid.UUID, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in session.execute(stmt).all()}


def _scoped(principal: Principal, facility_ids: list[uuid.UUID]) -> ColumnElement[bool]:
    return and_(Patient.home_facility_id.in_(facility_ids), patient_in_scope(principal, Patient.id))


def latest_bp(since: datetime) -> Any:
    """Subquery: each patient's most recent BP since `since` (systolic and diastolic of one panel)."""
    sbp = Reading.__table__.alias("sbp")
    ranked = (
        select(
            sbp.c.patient_id,
            sbp.c.value.label("systolic"),
            sbp.c.panel_id,
            func.row_number()
            .over(partition_by=sbp.c.patient_id, order_by=(sbp.c.effective_at.desc(), sbp.c.id))
            .label("rn"),
        )
        .where(sbp.c.code == SYSTOLIC, sbp.c.effective_at >= since)
        .subquery("ranked")
    )
    dbp = Reading.__table__.alias("dbp")
    return (
        select(ranked.c.patient_id, ranked.c.systolic, dbp.c.value.label("diastolic"))
        .join(dbp, and_(dbp.c.panel_id == ranked.c.panel_id, dbp.c.code == DIASTOLIC))
        .where(ranked.c.rn == 1)
        .subquery("latest_bp")
    )


def controlled(systolic: Any, diastolic: Any) -> ColumnElement[bool]:
    rule = targets()["bp_control"]
    return and_(systolic < rule["systolic_below"], diastolic < rule["diastolic_below"])


def facility_figures(
    session: Session, principal: Principal, orgs: list[Organisation], now: datetime
) -> list[FacilityFigures]:
    ids = [o.id for o in orgs]
    rows = [
        FacilityFigures(o.id, o.code, o.name, o.tier, o.district_code, o.latitude, o.longitude) for o in orgs
    ]
    if not ids:
        return rows
    home = Patient.home_facility_id
    residents = _by_facility(
        session,
        select(home, func.count()).where(_scoped(principal, ids), Patient.active.is_(True)).group_by(home),
    )
    screened = _by_facility(
        session,
        select(home, func.count(distinct(RiskAssessment.patient_id)))
        .select_from(RiskAssessment)
        .join(Patient, Patient.id == RiskAssessment.patient_id)
        .where(_scoped(principal, ids))
        .group_by(home),
    )
    since = now - timedelta(days=int(targets()["bp_control"]["window_days"]))
    bp = latest_bp(since)
    control = _by_facility(
        session,
        select(
            home,
            func.count(),
            func.sum(case((controlled(bp.c.systolic, bp.c.diastolic), 1), else_=0)),
        )
        .select_from(bp)
        .join(Patient, Patient.id == bp.c.patient_id)
        .where(_scoped(principal, ids))
        .group_by(home),
    )
    alerts = _by_facility(
        session,
        select(home, func.count())
        .select_from(DeviceAlert)
        .join(Patient, Patient.id == DeviceAlert.patient_id)
        .where(_scoped(principal, ids), DeviceAlert.status == AlertStatus.OPEN)
        .group_by(home),
    )
    devices = _by_facility(
        session,
        select(home, func.count(distinct(DeviceBinding.device_id)))
        .select_from(DeviceBinding)
        .join(Patient, Patient.id == DeviceBinding.patient_id)
        .where(_scoped(principal, ids), DeviceBinding.end_at.is_(None))
        .group_by(home),
    )
    for f in rows:
        f.residents = int(residents.get(f.id, (0,))[0])
        f.screened = int(screened.get(f.id, (0,))[0])
        measured, ok = control.get(f.id, (0, 0))
        f.bp_measured, f.bp_controlled = int(measured or 0), int(ok or 0)
        f.open_alerts = int(alerts.get(f.id, (0,))[0])
        f.devices = int(devices.get(f.id, (0,))[0])
    return rows


def month_of(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def months_back(now: datetime, n: int) -> list[str]:
    year, month = now.year, now.month
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def trends(
    session: Session, principal: Principal, facility_ids: list[uuid.UUID], now: datetime
) -> dict[str, list[Any]]:
    """Per month over the last year: people screened, BP readings and the share below the control
    threshold, device alerts."""
    months = months_back(now, TREND_MONTHS)
    start = datetime(int(months[0][:4]), int(months[0][5:]), 1, tzinfo=now.tzinfo)
    dialect = session.get_bind().dialect.name
    empty: dict[str, list[Any]] = {
        "months": months,
        "screened": [0] * len(months),
        "bp_readings": [0] * len(months),
        "bp_in_target": [None] * len(months),
        "alerts": [0] * len(months),
    }
    if not facility_ids:
        return empty
    index = {m: i for i, m in enumerate(months)}
    scoped = _scoped(principal, facility_ids)

    month = month_of(RiskAssessment.assessed_at, dialect)
    for m, n in session.execute(
        select(month, func.count(distinct(RiskAssessment.patient_id)))
        .join(Patient, Patient.id == RiskAssessment.patient_id)
        .where(scoped, RiskAssessment.assessed_at >= start)
        .group_by(month)
    ).all():
        if m in index:
            empty["screened"][index[m]] = int(n)

    sbp, dbp = Reading.__table__.alias("s"), Reading.__table__.alias("d")
    month = month_of(sbp.c.effective_at, dialect)
    for m, n, ok in session.execute(
        select(month, func.count(), func.sum(case((controlled(sbp.c.value, dbp.c.value), 1), else_=0)))
        .select_from(sbp)
        .join(dbp, and_(dbp.c.panel_id == sbp.c.panel_id, dbp.c.code == DIASTOLIC))
        .join(Patient, Patient.id == sbp.c.patient_id)
        .where(scoped, sbp.c.code == SYSTOLIC, sbp.c.effective_at >= start)
        .group_by(month)
    ).all():
        if m in index:
            empty["bp_readings"][index[m]] = int(n)
            empty["bp_in_target"][index[m]] = round(int(ok or 0) / int(n), 4) if n else None

    month = month_of(DeviceAlert.created_at, dialect)
    for m, n in session.execute(
        select(month, func.count())
        .join(Patient, Patient.id == DeviceAlert.patient_id)
        .where(scoped, DeviceAlert.created_at >= start)
        .group_by(month)
    ).all():
        if m in index:
            empty["alerts"][index[m]] = int(n)
    return empty


def district_rows(facilities: list[FacilityFigures]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in facilities:
        d = out.setdefault(
            f.district_code,
            {
                "code": f.district_code,
                "facilities": 0,
                "residents": 0,
                "screened": 0,
                "measured": 0,
                "controlled": 0,
                "open_alerts": 0,
            },
        )
        d["facilities"] += 1
        d["residents"] += f.residents
        d["screened"] += f.screened
        d["measured"] += f.bp_measured
        d["controlled"] += f.bp_controlled
        d["open_alerts"] += f.open_alerts
    for d in out.values():
        d["coverage"] = d["screened"] / d["residents"] if d["residents"] else None
        d["bp_control"] = d["controlled"] / d["measured"] if d["measured"] else None
    return sorted(out.values(), key=lambda d: d["code"])


ProgrammeKpis = Callable[[Session, Principal, list[uuid.UUID], datetime], dict[uuid.UUID, dict[str, Any]]]


def build_overview(
    session: Session,
    principal: Principal,
    *,
    district: str | None = None,
    facility_code: str | None = None,
    now: datetime | None = None,
    programme_kpis: ProgrammeKpis | None = None,
) -> Overview:
    now = now or utcnow()
    orgs = visible_facilities(session, principal)
    level = "region"
    if facility_code:
        orgs = [o for o in orgs if o.code == facility_code]
        level = "facility"
    elif district:
        orgs = [o for o in orgs if o.district_code == district]
        level = "district"
    figures = facility_figures(session, principal, orgs, now)
    if programme_kpis is not None:
        for f, kpis in zip(
            figures, _kpis_in_order(programme_kpis, session, principal, figures, now), strict=True
        ):
            f.programme = kpis
    return Overview(
        level=level,
        district=district
        if level == "district"
        else (orgs[0].district_code if level == "facility" and orgs else None),
        facility=figures[0] if level == "facility" and figures else None,
        facilities=figures,
        districts=district_rows(figures),
        trends=trends(session, principal, [f.id for f in figures], now),
        computed_at=now,
    )


def _kpis_in_order(
    kpis: ProgrammeKpis, session: Session, principal: Principal, figures: list[FacilityFigures], now: datetime
) -> list[dict[str, Any]]:
    found = kpis(session, principal, [f.id for f in figures], now)
    return [found.get(f.id, {}) for f in figures]


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
