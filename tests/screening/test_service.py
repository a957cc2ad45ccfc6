"""Screening the database population: results stored as risk assessments, every write audited,
patients outside the user's scope refused."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from medloop.auth.principal import Principal, system_principal
from medloop.auth.scope import descendants
from medloop.screening.frames import InputError
from medloop.screening.models import RiskAssessment
from medloop.screening.runner import ScreenOptions, run_screen
from medloop.screening.service import age_on, screen_patients
from tests.factories import World


def _population(world: World) -> pl.DataFrame:
    """Measurements keyed by patient id; sex and age come from the records (born 1960-05-01, men)."""
    ids = [str(world.patients[k].id) for k in ("alice", "bob", "carol", "dan")]
    return pl.DataFrame(
        {
            "patient_id": ids,
            "sbp": [150.0, 118.0, 185.0, None],
            "dbp": [92.0, 76.0, 100.0, 80.0],
            "fpg_mmol": [7.4, 5.0, 6.3, 5.5],
            "psa": [2.0, 5.0, 12.0, None],
        }
    )


def test_age_on() -> None:
    assert age_on(date(1960, 5, 1), date(2025, 4, 30)) == 64
    assert age_on(date(1960, 5, 1), date(2025, 5, 1)) == 65


def test_screen_patients_stores_and_audits(engine: Engine, world: World) -> None:
    with Session(engine) as session:
        run = screen_patients(
            session, system_principal(), _population(world), source="campaign-7", screened_on=date(2025, 6, 1)
        )
        session.commit()
        assert run.plan.model_names == ("blood_pressure", "glycaemia", "psa")
        assert run.stored == 12
        rows = session.scalars(select(RiskAssessment).order_by(RiskAssessment.model)).all()
        by = {(r.patient_id, r.model): r for r in rows}
        alice, dan = world.patients["alice"].id, world.patients["dan"].id
        assert by[(alice, "blood_pressure")].category == "grade_1"
        assert by[(alice, "glycaemia")].flags == ["fpg_diabetic", "confirm_on_another_day"]
        assert by[(alice, "psa")].category == "rescreen_2_years"  # age 65 from the record, sex M
        assert by[(dan, "blood_pressure")].reasons == ["missing:sbp"]
        assert all(r.source == "campaign-7" and r.assessed_at.tzinfo is not None for r in rows)
        assert {r.model_version for r in rows if r.model == "psa"} == {"ncc-2022.1"}
        audits = session.scalars(select(AuditEvent).where(AuditEvent.resource_type == "RiskAssessment")).all()
        assert {a.patient_id for a in audits} == {p.id for p in world.patients.values()}
        assert {a.action for a in audits} == {"create"}


def test_patients_outside_scope_are_refused(engine: Engine, world: World) -> None:
    with Session(engine) as session:
        roots = {world.org_id("CHC-A1")}
        clinician = Principal(
            None,
            "doc-a1",
            frozenset({"clinician"}),
            facilities=frozenset(roots),
            scope=descendants(session, roots),
        )
        with pytest.raises(InputError, match="1 patient id"):
            screen_patients(session, clinician, _population(world)[[0, 2]], models=["blood_pressure"])
        with pytest.raises(InputError, match="is not a patient id"):
            screen_patients(
                session, clinician, pl.DataFrame({"patient_id": ["x"], "sbp": [1.0], "dbp": [1.0]})
            )
        assert session.scalar(select(func.count()).select_from(RiskAssessment)) == 0


def test_cli_store_routes_from_home_facility(engine: Engine, world: World, tmp_path: Path) -> None:
    path = tmp_path / "campaign.csv"
    _population(world).with_columns(
        pl.Series("age", [55, 60, 62, 45]),
        pl.Series("smoking", ["current"] * 4),
        pl.Series("pack_years", [35.0, 0.0, 40.0, 0.0]),
        pl.Series("years_since_quit", [None] * 4, dtype=pl.Float64),
        pl.Series("passive_smoking_years", [0.0] * 4),
        pl.Series("copd", [False] * 4),
        pl.Series("occupational_exposure", [False] * 4),
        pl.Series("family_history_lung_cancer", [False] * 4),
    ).write_csv(path)
    options = ScreenOptions(
        path,
        tmp_path / "out.csv",
        models=("lung_screening", "blood_pressure"),
        referrals=tmp_path / "ref.csv",
        store=True,
        source="lung-2025",
        database_url=engine.url.render_as_string(hide_password=False),
    )
    report = run_screen(options, Console(quiet=True))
    assert report.stored == 8
    referrals = pl.read_csv(tmp_path / "ref.csv")
    sent = dict(zip(referrals.get_column("patient_id"), referrals.get_column("facility_code"), strict=True))
    # alice lives at CHC-A1 → nearest LDCT is the hub; carol at CHC-B1 → CNTY-B.
    assert sent == {str(world.patients["alice"].id): "HUB", str(world.patients["carol"].id): "CNTY-B"}
    with Session(engine) as session:
        assert session.scalar(select(func.count()).where(RiskAssessment.source == "lung-2025")) == 8
