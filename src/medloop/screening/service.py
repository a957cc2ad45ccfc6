"""Screening the database population: a population table keyed by patient id is completed from
the patient records (sex, age at the screening date, home-facility location for routing), run
through the models, and stored as risk assessments (bulk path), every patient's write audited."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import polars as pl
from sqlalchemy import Row, Table, select
from sqlalchemy.orm import Session

from medloop.auth.audit import record_access
from medloop.auth.principal import Principal
from medloop.auth.scope import patient_in_scope
from medloop.clinical.scoring import Model, evaluate, split_codes
from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.screening.engine import Plan, Summary, make_plan, select_models
from medloop.screening.frames import InputError, normalise
from medloop.screening.models import RiskAssessment
from medloop.store.base import utcnow
from medloop.store.bulk import bulk_insert

KEY = "patient_id"
ASSESSMENTS = cast(Table, RiskAssessment.__table__)
FROM_RECORDS = ("sex", "age", "latitude", "longitude")  # columns the patient records can supply
_LOOKUP_CHUNK = 1000


def age_on(birth: date, day: date) -> int:
    """Age in completed years on `day`."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _patient_ids(frame: pl.DataFrame) -> list[uuid.UUID]:
    ids = []
    for i, value in enumerate(frame.get_column(KEY).to_list()):
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            raise InputError(f"{KEY} {value!r} (row {i + 1}) is not a patient id") from None
    return ids


@dataclass
class DatabasePopulation:
    """Completes batches from the patient records and stores their results, for one principal."""

    session: Session
    principal: Principal
    screened_on: date
    source: str | None = None
    assessed_at: datetime | None = None

    def prepare(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Add sex and age (where the table lacks them) and the home facility's coordinates (where
        the table has none). Unknown patients, or patients outside the principal's scope, are an
        input error."""
        ids = _patient_ids(frame)
        records = self._records(ids)
        frame = frame.with_columns(pl.Series(KEY, [str(i) for i in ids], dtype=pl.String))
        joined = frame.join(records, on=KEY, how="left", maintain_order="left")
        return joined.with_columns(
            pl.coalesce(c, f"{c}__record").alias(c) if c in frame.columns else pl.col(f"{c}__record").alias(c)
            for c in FROM_RECORDS
        ).drop(f"{c}__record" for c in FROM_RECORDS)

    def _records(self, ids: Sequence[uuid.UUID]) -> pl.DataFrame:
        rows: list[Row[uuid.UUID, str, date, float, float]] = []
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            stmt = (
                select(
                    Patient.id, Patient.sex, Patient.birth_date, Organisation.latitude, Organisation.longitude
                )
                .join(Organisation, Patient.home_facility_id == Organisation.id)
                .where(Patient.id.in_(chunk), patient_in_scope(self.principal, Patient.id))
            )
            rows.extend(self.session.execute(stmt).all())
        found = {r[0] for r in rows}
        unknown = [str(i) for i in wanted if i not in found]
        if unknown:
            raise InputError(
                f"{len(unknown)} patient id(s) are unknown or outside your facility scope, e.g. {unknown[0]}"
            )
        return pl.DataFrame(
            {
                KEY: [str(r[0]) for r in rows],
                "sex__record": [r[1] for r in rows],
                "age__record": [age_on(r[2], self.screened_on) for r in rows],
                "latitude__record": [r[3] for r in rows],
                "longitude__record": [r[4] for r in rows],
            },
            schema={
                KEY: pl.String,
                "sex__record": pl.String,
                "age__record": pl.Int64,
                "latitude__record": pl.Float64,
                "longitude__record": pl.Float64,
            },
        )

    def store(self, results: pl.DataFrame, models: Sequence[Model]) -> int:
        """Store one batch of results as risk assessments (one per patient per model) and audit the
        write for every patient. Returns the number of assessments stored."""
        at = self.assessed_at or utcnow()
        ids = [uuid.UUID(v) for v in results.get_column(KEY).to_list()]
        rows: list[dict[str, Any]] = []
        for model in models:
            score_col, category_col, flags_col, reasons_col = model.columns()
            columns = zip(
                ids,
                results.get_column(score_col).to_list(),
                results.get_column(category_col).to_list(),
                results.get_column(flags_col).to_list(),
                results.get_column(reasons_col).to_list(),
                strict=True,
            )
            rows.extend(
                {
                    "id": uuid.uuid4(),
                    "patient_id": pid,
                    "model": model.name,
                    "model_version": model.version,
                    "score": score,
                    "category": category,
                    "reasons": split_codes(reasons),
                    "flags": split_codes(flags),
                    "assessed_at": at,
                    "source": self.source,
                }
                for pid, score, category, flags, reasons in columns
            )
        written = bulk_insert(self.session.connection(), ASSESSMENTS, rows)
        record_access(
            self.session,
            self.principal,
            "create",
            "RiskAssessment",
            ids,
            detail={"source": self.source, "models": [m.name for m in models]},
        )
        return written


def plan_for_patients(columns: Sequence[str], models: Sequence[Model]) -> Plan:
    """The plan for a population table keyed by patient id, counting the columns the patient
    records supply."""
    if KEY not in columns:
        raise InputError(f"a database population table needs a {KEY} column")
    return make_plan({*columns, *FROM_RECORDS}, models, key=KEY)


@dataclass(frozen=True)
class ScreeningRun:
    plan: Plan
    summary: Summary
    stored: int


def screen_patients(
    session: Session,
    principal: Principal,
    population: pl.DataFrame,
    *,
    models: Sequence[str] | None = None,
    source: str | None = None,
    screened_on: date | None = None,
) -> ScreeningRun:
    """Screen a population table keyed by patient id and store the results as risk assessments."""
    plan = plan_for_patients(population.columns, select_models(models))
    db = DatabasePopulation(session, principal, screened_on or utcnow().date(), source)
    present = [c for c in plan.columns if c in population.columns]
    frame = db.prepare(normalise(population, present, "the population table"))
    results = evaluate(frame, plan.models, keep=plan.keep)
    summary = Summary(plan.models)
    summary.add(results)
    return ScreeningRun(plan, summary, db.store(results, plan.models))
