"""HEART score for chest pain (data: data/heart.yaml, reference pack §4): history, ECG, age, risk
factors and troponin, 0–2 points each; 0–3 low, 4–6 moderate, 7–10 high. An encounter model: its
inputs are not part of the population contract."""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import (
    Categories,
    Model,
    Outcome,
    Stage,
    banded,
    define,
    enum_points,
    model_data,
)

DOC = model_data("heart")
POINTS = DOC["points"]
BANDS = DOC["categories"]["bands"]
CATEGORIES = Categories([b["category"] for b in BANDS])
_TOP_BAND = POINTS["risk_factors"][-1]["min"]  # this many risk factors score like known disease


def score() -> pl.Expr:
    known_disease, count = pl.col("atherosclerotic_disease"), pl.col("heart_risk_factors")
    risk_factors = (
        pl.when(known_disease)
        .then(pl.lit(POINTS["atherosclerotic_disease"]))
        .when(known_disease.is_null() & (count < _TOP_BAND))
        .then(None)
        .otherwise(banded(count, POINTS["risk_factors"], "points"))
    )
    return (
        enum_points("heart_history", POINTS["history"])
        + enum_points("heart_ecg", POINTS["ecg"])
        + banded(pl.col("age"), POINTS["age"], "points")
        + risk_factors
        + banded(pl.col("troponin_ratio"), POINTS["troponin"], "points")
    )


def _build(stage: Stage) -> Outcome:
    total = stage.keep("score", score())
    return Outcome(
        category=CATEGORIES.banded(total, BANDS),
        score=total,
        # Known atherosclerotic disease scores the top band whatever the count, and vice versa.
        needed={
            "heart_risk_factors": ~pl.col("atherosclerotic_disease"),
            "atherosclerotic_disease": pl.col("heart_risk_factors") < _TOP_BAND,
        },
    )


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=(
        "heart_history",
        "heart_ecg",
        "age",
        "heart_risk_factors",
        "atherosclerotic_disease",
        "troponin_ratio",
    ),
    build=_build,
    population=False,
)
