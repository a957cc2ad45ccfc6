"""KPIs, pre-aggregated per facility, district and region (city) and month: `medloop kpi refresh`.

Each family of indicators is one set-based query that classifies every enrolment (or patient, or
referral) into a temporary fact table, then three GROUP BYs (one per level) over it; medians use a
window (row_number over the ordered values). No per-patient Python: Python only sees one row per
organisational unit. The same SQL runs on SQLite and PostgreSQL.

Indicators (programme / indicator; numerator, denominator, value):
- every programme / enrolled: active enrolments at the end of the month.
- hypertension (`hypertension_control`): the cohort is patients enrolled more than the control
  window (3 months) before the month's end; each is exactly one of bp_controlled (last visit BP
  within the window and below the target), bp_uncontrolled (last visit within the window, not
  below), missed_visits (no visit within the window, but a visit or the enrolment within 12
  months), lost_to_follow_up (neither) — so the four add up to the cohort.
- diabetes (`metabolic_control`): composite_controlled (latest HbA1c, BP and LDL-C all on
  target), hba1c_controlled; denominator the enrolled.
- screening / screening_coverage: eligible residents (alive, active, age in the model's valid
  range at the month's end) with a result of the model / eligible residents, by home facility.
- each programme / referral_completion (referrals made in the month that were completed, by the
  referring facility) and referral_median_hours (made → completed).
- chest pain (`chest_pain_center`): per metric of the definition, `<id>_compliance` (share within
  the target), `<id>_median_minutes`, `<id>_mean_minutes`; proportion metrics as `<id>`. Cases
  count in the month of their first medical contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Uuid,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.clinical.catalogue import MODELS
from medloop.clinical.scoring import STATUSES
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.programs.definitions import Definition, add_months, load_definitions, parse_duration
from medloop.programs.models import Enrolment, KpiValue, ProgrammeEvent, Referral, Timepoint
from medloop.programs.sql import seconds_between, table
from medloop.programs.worklist import lost_after, reporting
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow

LEVELS: dict[str, Any] = {
    "facility": Organisation.code,
    "district": Organisation.district_code,
    "region": Organisation.city_code,
}
ORG = table(Organisation)
EN = table(Enrolment)
E = table(ProgrammeEvent)
TP = table(Timepoint)
R = table(Referral)


@dataclass(frozen=True)
class Value:
    level: str
    unit: str
    programme: str
    indicator: str
    numerator: float | None
    denominator: float | None
    value: float | None


def parse_period(text_value: str) -> date:
    """'2026-10' → the month's first day."""
    try:
        year, month = text_value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise ValueError(f"not a month: {text_value!r} (use YYYY-MM)") from None


def month_bounds(period: date) -> tuple[datetime, datetime]:
    start = datetime(period.year, period.month, 1, tzinfo=UTC)
    return start, add_months(start, 1)


def _rate(num: float | None, den: float | None) -> float | None:
    return None if not den else (num or 0) / den


# --- the fact tables -----------------------------------------------------------------------------


class _Facts:
    """A temporary table filled by INSERT … SELECT, grouped per level afterwards."""

    def __init__(self, conn: Connection, name: str, columns: Sequence[Column[Any]], source: Select) -> None:
        self.conn = conn
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        self.t = Table(
            name,
            MetaData(),
            Column("facility_id", Uuid),
            Column("programme", String(40)),
            *columns,
            prefixes=["TEMPORARY"],
        )
        self.t.create(conn)
        conn.execute(insert(self.t).from_select([c.name for c in self.t.columns], source))

    def __enter__(self) -> _Facts:
        return self

    def __exit__(self, *_: object) -> None:
        self.t.drop(self.conn)

    def grouped(
        self, measures: Mapping[str, ColumnElement[Any]]
    ) -> Iterable[tuple[str, str, str, Mapping[Any, Any]]]:
        """(level, unit, programme, measures) for every unit with facts."""
        join = self.t.join(ORG, ORG.c.id == self.t.c.facility_id)
        for level, key in LEVELS.items():
            stmt = (
                select(key.label("unit"), self.t.c.programme, *(m.label(n) for n, m in measures.items()))
                .select_from(join)
                .group_by(key, self.t.c.programme)
            )
            for row in self.conn.execute(stmt):
                yield level, str(row.unit), str(row.programme), row._mapping

    def medians(self, column: str) -> dict[tuple[str, str, str], float]:
        """The median of a column per (level, unit, programme), ignoring nulls."""
        value = self.t.c[column]
        join = self.t.join(ORG, ORG.c.id == self.t.c.facility_id)
        out: dict[tuple[str, str, str], float] = {}
        for level, key in LEVELS.items():
            part = (key, self.t.c.programme)
            ranked = (
                select(
                    key.label("unit"),
                    self.t.c.programme,
                    value.label("v"),
                    func.row_number().over(partition_by=part, order_by=value).label("rn"),
                    func.count().over(partition_by=part).label("n"),
                )
                .select_from(join)
                .where(value.is_not(None))
                .subquery()
            )
            middle = or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2)
            stmt = select(ranked.c.unit, ranked.c.programme, func.avg(ranked.c.v)).where(middle)
            for unit, programme, median in self.conn.execute(
                stmt.group_by(ranked.c.unit, ranked.c.programme)
            ):
                out[(level, unit, programme)] = float(median)
        return out


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def _active_at(end: datetime, programme: str | None = None) -> list[ColumnElement[bool]]:
    where = [EN.c.enrolled_at < end, or_(EN.c.ended_at.is_(None), EN.c.ended_at >= end)]
    if programme is not None:
        where.append(EN.c.programme == programme)
    return where


def _latest(columns: Sequence[str], patients: Select, end: datetime, *extra: ColumnElement[bool]) -> Any:
    """Each patient's latest event before `end` with all these columns set: the columns and its time."""
    ranked = (
        select(
            E.c.patient_id,
            *(E.c[c] for c in columns),
            E.c.effective_at,
            func.row_number()
            .over(partition_by=E.c.patient_id, order_by=(E.c.effective_at.desc(), E.c.id.desc()))
            .label("rn"),
        )
        .where(
            *(E.c[c].is_not(None) for c in columns),
            E.c.effective_at < end,
            E.c.patient_id.in_(patients),
            *extra,
        )
        .subquery()
    )
    keep = (ranked.c.patient_id, *(ranked.c[c] for c in columns), ranked.c.effective_at)
    return select(*keep).where(ranked.c.rn == 1).subquery()


# --- the indicator families ----------------------------------------------------------------------


def enrolled(conn: Connection, end: datetime) -> list[Value]:
    source = select(EN.c.facility_id, EN.c.programme).where(*_active_at(end))
    with _Facts(conn, "kpi_enrolled", [], source) as facts:
        return [
            Value(level, unit, programme, "enrolled", m["n"], None, m["n"])
            for level, unit, programme, m in facts.grouped({"n": func.count()})
        ]


def hypertension_control(conn: Connection, d: Definition, end: datetime) -> list[Value]:
    target = d.param("control_target")
    window_start = parse_duration(d.param("control_window")).before(end)
    lost_cut = lost_after().before(end)
    enr = select(EN.c.patient_id, EN.c.facility_id, EN.c.enrolled_at).where(*_active_at(end, d.id)).subquery()
    last = _latest(
        ["sbp", "dbp"], select(enr.c.patient_id), end, E.c.kind == "visit", E.c.effective_at >= lost_cut
    )
    visited_in_window = last.c.effective_at >= window_start
    category = case(
        (
            and_(visited_in_window, last.c.sbp < target["sbp_below"], last.c.dbp < target["dbp_below"]),
            "bp_controlled",
        ),
        (visited_in_window, "bp_uncontrolled"),
        (or_(last.c.effective_at.is_not(None), enr.c.enrolled_at >= lost_cut), "missed_visits"),
        else_="lost_to_follow_up",
    )
    source = select(
        enr.c.facility_id, literal(d.id), category, _flag(enr.c.enrolled_at < window_start)
    ).select_from(enr.outerjoin(last, last.c.patient_id == enr.c.patient_id))
    columns: list[Column[Any]] = [Column("category", String(20)), Column("cohort", Integer)]
    names = ("bp_controlled", "bp_uncontrolled", "missed_visits", "lost_to_follow_up")
    with _Facts(conn, "kpi_hypertension", columns, source) as facts:
        t = facts.t.c
        measures = {"cohort": func.sum(t.cohort)} | {
            n: func.sum(_flag(and_(t.category == n, t.cohort == 1))) for n in names
        }
        out = []
        for level, unit, programme, m in facts.grouped(measures):
            out.append(Value(level, unit, programme, "cohort", m["cohort"], None, m["cohort"]))
            out.extend(
                Value(level, unit, programme, n, m[n], m["cohort"], _rate(m[n], m["cohort"])) for n in names
            )
        return out


def metabolic_control(conn: Connection, d: Definition, end: datetime) -> list[Value]:
    hba1c, ldl, bp = d.param("hba1c_target")["below"], d.param("ldl_target")["below"], d.param("bp_target")
    enr = select(EN.c.patient_id, EN.c.facility_id).where(*_active_at(end, d.id)).subquery()
    patients = select(enr.c.patient_id)
    h = _latest(["hba1c_pct"], patients, end)
    ldl_last = _latest(["ldl_mmol"], patients, end)
    b = _latest(["sbp", "dbp"], patients, end, E.c.kind == "visit")  # office BP, not home readings
    composite = and_(
        h.c.hba1c_pct < hba1c, ldl_last.c.ldl_mmol < ldl, b.c.sbp < bp["sbp_below"], b.c.dbp < bp["dbp_below"]
    )
    source = select(
        enr.c.facility_id, literal(d.id), _flag(composite), _flag(h.c.hba1c_pct < hba1c)
    ).select_from(
        enr.outerjoin(h, h.c.patient_id == enr.c.patient_id)
        .outerjoin(ldl_last, ldl_last.c.patient_id == enr.c.patient_id)
        .outerjoin(b, b.c.patient_id == enr.c.patient_id)
    )
    columns = [Column("composite", Integer), Column("hba1c_ok", Integer)]
    with _Facts(conn, "kpi_metabolic", columns, source) as facts:
        t = facts.t.c
        measures = {"n": func.count(), "composite": func.sum(t.composite), "hba1c": func.sum(t.hba1c_ok)}
        out = []
        for level, unit, programme, m in facts.grouped(measures):
            out.append(
                Value(
                    level,
                    unit,
                    programme,
                    "composite_controlled",
                    m["composite"],
                    m["n"],
                    _rate(m["composite"], m["n"]),
                )
            )
            out.append(
                Value(
                    level, unit, programme, "hba1c_controlled", m["hba1c"], m["n"], _rate(m["hba1c"], m["n"])
                )
            )
        return out


def screening_coverage(conn: Connection, end: datetime) -> list[Value]:
    model = MODELS[reporting()["screening_coverage"]["value"]["model"]]
    ages = model.valid["age"]
    last_day = (end - timedelta(days=1)).date()
    oldest_birth = _years_before(last_day, int(ages["max"]) + 1) + timedelta(days=1)  # age ≤ max
    youngest_birth = _years_before(last_day, int(ages["min"]))  # age ≥ min
    ra = table(RiskAssessment)
    screened = exists().where(
        ra.c.patient_id == Patient.id,
        ra.c.model == model.name,
        ra.c.category.not_in(STATUSES),
        ra.c.assessed_at < end,
    )
    source: Select = select(Patient.home_facility_id, literal("screening"), _flag(screened)).where(
        Patient.active.is_(True),
        Patient.deceased.is_(False),
        Patient.birth_date >= oldest_birth,
        Patient.birth_date <= youngest_birth,
    )
    with _Facts(conn, "kpi_screening", [Column("screened", Integer)], source) as facts:
        measures = {"n": func.count(), "screened": func.sum(facts.t.c.screened)}
        return [
            Value(
                level,
                unit,
                programme,
                "screening_coverage",
                m["screened"],
                m["n"],
                _rate(m["screened"], m["n"]),
            )
            for level, unit, programme, m in facts.grouped(measures)
        ]


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def referral_completion(conn: Connection, start: datetime, end: datetime) -> list[Value]:
    done = R.c.completed_at.is_not(None)
    hours = case((done, seconds_between(conn, R.c.authored_at, R.c.completed_at) / 3600.0), else_=None)
    source = select(R.c.requester_id, R.c.programme, _flag(done), hours).where(
        R.c.authored_at >= start, R.c.authored_at < end
    )
    with _Facts(
        conn, "kpi_referrals", [Column("completed", Integer), Column("hours", Float)], source
    ) as facts:
        medians = facts.medians("hours")
        out = []
        for level, unit, programme, m in facts.grouped(
            {"n": func.count(), "completed": func.sum(facts.t.c.completed)}
        ):
            out.append(
                Value(
                    level,
                    unit,
                    programme,
                    "referral_completion",
                    m["completed"],
                    m["n"],
                    _rate(m["completed"], m["n"]),
                )
            )
            median = medians.get((level, unit, programme))
            out.append(Value(level, unit, programme, "referral_median_hours", None, m["completed"], median))
        return out


def chest_pain_center(conn: Connection, d: Definition, start: datetime, end: datetime) -> list[Value]:
    names = list(d.timepoints)
    pivot = (
        select(TP.c.enrolment_id, *(func.max(case((TP.c.name == n, TP.c.at))).label(n) for n in names))
        .where(TP.c.programme == d.id)
        .group_by(TP.c.enrolment_id)
        .subquery()
    )
    metrics = d.metrics
    columns: list[Column[Any]] = []
    values: list[ColumnElement[Any]] = []
    for m in metrics:
        if m.interval:
            a, b = pivot.c[m.start or ""], pivot.c[m.end or ""]
            columns.append(Column(f"m_{m.id}", Float))
            values.append(
                case((and_(a.is_not(None), b.is_not(None)), seconds_between(conn, a, b) / 60.0), else_=None)
            )
        else:
            den = and_(*(pivot.c[n].is_not(None) for n in m.denominator))
            num = and_(den, *(pivot.c[n].is_not(None) for n in m.numerator))
            columns += [Column(f"n_{m.id}", Integer), Column(f"d_{m.id}", Integer)]
            values += [_flag(num), _flag(den)]
    fmc = pivot.c[names[0]]
    source = (
        select(EN.c.facility_id, literal(d.id), *values)
        .select_from(pivot.join(EN, EN.c.id == pivot.c.enrolment_id))
        .where(fmc >= start, fmc < end)
    )
    with _Facts(conn, "kpi_cpc", columns, source) as facts:
        t = facts.t.c
        measures: dict[str, ColumnElement[Any]] = {}
        for m in metrics:
            if m.interval:
                col = t[f"m_{m.id}"]
                measures[f"{m.id}__n"] = func.count(col)
                measures[f"{m.id}__ok"] = func.sum(_flag(col <= m.target_minutes))
                measures[f"{m.id}__mean"] = func.avg(col)
            else:
                measures[f"{m.id}__num"] = func.sum(t[f"n_{m.id}"])
                measures[f"{m.id}__den"] = func.sum(t[f"d_{m.id}"])
        medians = {m.id: facts.medians(f"m_{m.id}") for m in metrics if m.interval}
        out = []
        for level, unit, programme, got in facts.grouped(measures):
            for m in metrics:
                if m.interval:
                    n, ok = got[f"{m.id}__n"], got[f"{m.id}__ok"]
                    mean = got[f"{m.id}__mean"]
                    median = medians[m.id].get((level, unit, programme))
                    out += [
                        Value(level, unit, programme, f"{m.id}_compliance", ok, n, _rate(ok, n)),
                        Value(level, unit, programme, f"{m.id}_median_minutes", None, n, median),
                        Value(
                            level,
                            unit,
                            programme,
                            f"{m.id}_mean_minutes",
                            None,
                            n,
                            float(mean) if mean is not None else None,
                        ),
                    ]
                else:
                    num, den = got[f"{m.id}__num"], got[f"{m.id}__den"]
                    out.append(Value(level, unit, programme, m.id, num, den, _rate(num, den)))
        return out


FAMILIES = ("hypertension_control", "metabolic_control", "chest_pain_center")


def compute(conn: Connection, period: date) -> list[Value]:
    start, end = month_bounds(period)
    values = enrolled(conn, end) + screening_coverage(conn, end) + referral_completion(conn, start, end)
    for d in load_definitions().values():
        if "hypertension_control" in d.kpis:
            values += hypertension_control(conn, d, end)
        if "metabolic_control" in d.kpis:
            values += metabolic_control(conn, d, end)
        if "chest_pain_center" in d.kpis:
            values += chest_pain_center(conn, d, start, end)
    return values


def refresh(session: Session, period: date) -> int:
    """Recompute one month's KPI values (replacing the month's previous values). Returns the number
    of values written."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
    values = compute(conn, period)
    conn.execute(delete(KpiValue).where(KpiValue.period == period))
    now = utcnow()
    rows = [
        {
            "period": period,
            "level": v.level,
            "unit": str(v.unit),
            "programme": v.programme,
            "indicator": v.indicator,
            "numerator": float(v.numerator) if v.numerator is not None else None,
            "denominator": float(v.denominator) if v.denominator is not None else None,
            "value": float(v.value) if v.value is not None else None,
            "refreshed_at": now,
        }
        for v in values
    ]
    if rows:
        conn.execute(insert(KpiValue), rows)
    return len(rows)


# --- reading ------------------------------------------------------------------------------------


def visible_units(session: Session, principal: Principal) -> dict[str, set[str]] | None:
    """The units whose figures the principal may read: the facilities in their scope and the
    districts and regions those lie in (None: everything)."""
    if principal.scope is None:
        return None
    rows = session.execute(
        select(Organisation.code, Organisation.district_code, Organisation.city_code).where(
            Organisation.id.in_(principal.scope)
        )
    ).all()
    return {
        "facility": {r[0] for r in rows},
        "district": {r[1] for r in rows},
        "region": {r[2] for r in rows},
    }


def search(
    session: Session,
    principal: Principal,
    *,
    period: date | None = None,
    level: str | None = None,
    unit: str | None = None,
    programme: str | None = None,
    indicator: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> tuple[list[KpiValue], int]:
    stmt = select(KpiValue)
    units = visible_units(session, principal)
    if units is not None:
        stmt = stmt.where(
            or_(*(and_(KpiValue.level == lvl, KpiValue.unit.in_(codes)) for lvl, codes in units.items()))
        )
    for column, value in (
        (KpiValue.period, period),
        (KpiValue.level, level),
        (KpiValue.unit, unit),
        (KpiValue.programme, programme),
        (KpiValue.indicator, indicator),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = (KpiValue.period, KpiValue.level, KpiValue.unit, KpiValue.programme, KpiValue.indicator)
    return list(session.scalars(stmt.order_by(*order).limit(limit).offset(offset))), total
