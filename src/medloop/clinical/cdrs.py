"""New Chinese Diabetes Risk Score (data: data/cdrs.yaml, reference pack §2). Points for age, BMI,
waist (by sex), SBP, family history of diabetes and male sex; 0–51, high risk at ≥ 25."""

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
    model_data,
    outside,
    points,
)

DOC = model_data("cdrs")
POINTS = DOC["points"]
BANDS = DOC["categories"]["bands"]
CATEGORIES = Categories([b["category"] for b in BANDS])


def score() -> pl.Expr:
    sex = pl.col("sex")
    waist = (
        pl.when(sex == "M")
        .then(banded(pl.col("waist_cm"), POINTS["waist"]["M"], "points"))
        .when(sex == "F")
        .then(banded(pl.col("waist_cm"), POINTS["waist"]["F"], "points"))
        .otherwise(None)
    )
    return (
        banded(pl.col("age"), POINTS["age"], "points")
        + banded(bmi(), POINTS["bmi"], "points")
        + waist
        + banded(pl.col("sbp"), POINTS["sbp"], "points")
        + points(pl.col("family_history_diabetes"), POINTS["family_history_diabetes"])
        + points(sex == "M", POINTS["male"])
    )


def _build(stage: Stage) -> Outcome:
    total = stage.keep("score", score())
    code, rule = outside("age", MODEL.valid["age"])
    return Outcome(category=CATEGORIES.banded(total, BANDS), score=total, not_applicable={code: rule})


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=("sex", "age", "height_cm", "weight_kg", "waist_cm", "sbp", "family_history_diabetes"),
    build=_build,
)
