"""Gastric-cancer risk score of the 2017 Chinese consensus (data: data/gastric.yaml, reference pack
§8): age, male sex, H. pylori antibody, pepsinogen I/II ratio and gastrin-17; 0–23 points, 0–11 low,
12–16 medium, 17–23 high; from age 40."""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import (
    Categories,
    Model,
    Outcome,
    Stage,
    banded,
    define,
    model_data,
    outside,
    points,
)

DOC = model_data("gastric")
POINTS = DOC["points"]
BANDS = DOC["categories"]["bands"]
CATEGORIES = Categories([b["category"] for b in BANDS])


def score() -> pl.Expr:
    pg = POINTS["pg_ratio_below"]
    return (
        banded(pl.col("age"), POINTS["age"], "points")
        + points(pl.col("sex") == "M", POINTS["male"])
        + points(pl.col("hp_positive"), POINTS["hp_positive"])
        + points(pl.col("pg_ratio") < pg["value"], pg["points"])
        + banded(pl.col("gastrin17"), POINTS["gastrin17"], "points")
    )


def _build(stage: Stage) -> Outcome:
    total = stage.keep("score", score())
    code, rule = outside("age", MODEL.valid["age"])
    return Outcome(category=CATEGORIES.banded(total, BANDS), score=total, not_applicable={code: rule})


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=("age", "sex", "hp_positive", "pg_ratio", "gastrin17"),
    build=_build,
)
