"""COPD screening questionnaire, COPD-SQ (data: data/copd_sq.yaml, reference pack §3). Seven items;
high risk at ≥ 16; applies from age 40. Never-smokers with no pack-years count as 0 pack-years."""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import (
    Categories,
    Model,
    Outcome,
    Stage,
    banded,
    bmi,
    define,
    enum_points,
    model_data,
    outside,
    points,
)

DOC = model_data("copd_sq")
POINTS = DOC["points"]
BANDS = DOC["categories"]["bands"]
CATEGORIES = Categories([b["category"] for b in BANDS])


def _never_smoked() -> pl.Expr:
    return pl.col("smoking") == "never"


def score() -> pl.Expr:
    pack_years = (
        pl.when(_never_smoked() & pl.col("pack_years").is_null()).then(0.0).otherwise(pl.col("pack_years"))
    )
    dyspnea = enum_points("dyspnea", POINTS["dyspnea"])
    return (
        banded(pl.col("age"), POINTS["age"], "points")
        + banded(pack_years, POINTS["pack_years"], "points")
        + banded(bmi(), POINTS["bmi"], "points")
        + points(pl.col("chronic_cough"), POINTS["chronic_cough"])
        + dyspnea
        + points(pl.col("biomass_exposure"), POINTS["biomass_exposure"])
        + points(pl.col("family_history_respiratory"), POINTS["family_history_respiratory"])
    )


def _build(stage: Stage) -> Outcome:
    total = stage.keep("score", score())
    code, rule = outside("age", MODEL.valid["age"])
    return Outcome(
        category=CATEGORIES.banded(total, BANDS),
        score=total,
        not_applicable={code: rule},
        needed={"pack_years": ~_never_smoked(), "smoking": pl.col("pack_years").is_null()},
    )


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=(
        "age",
        "smoking",
        "pack_years",
        "height_cm",
        "weight_kg",
        "chronic_cough",
        "dyspnea",
        "biomass_exposure",
        "family_history_respiratory",
    ),
    build=_build,
)
