"""Lung-cancer screening eligibility: China 2021 guideline (the default) and USPSTF 2021
(selectable), data: data/lung_screening.yaml, data/lung_screening_uspstf.yaml, reference pack §5.

Eligibility is three-valued: a person who meets one criterion is eligible even if other inputs are
missing; one who meets none while some are missing is "insufficient data"."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import Any

import polars as pl

from medloop.clinical.scoring import Categories, Model, Outcome, Stage, define, model_data

CHINA_DOC = model_data("lung_screening")
USPSTF_DOC = model_data("lung_screening_uspstf")
CATEGORIES = Categories(("eligible", "not_eligible"))


def _heavy_smoking(rule: Mapping[str, float]) -> pl.Expr:
    smoking, quit_years = pl.col("smoking"), pl.col("years_since_quit")
    recent_quit = (
        quit_years < rule["quit_years_below"]
        if "quit_years_below" in rule
        else quit_years <= rule["quit_years_max"]
    )
    return (pl.col("pack_years") >= rule["pack_years_min"]) & (
        (smoking == "current") | ((smoking == "former") & recent_quit)
    )


def _outcome(stage: Stage, criteria: Mapping[str, Any], routes: Mapping[str, pl.Expr]) -> Outcome:
    age = criteria["age"]
    in_age = pl.col("age").is_between(age["min"], age["max"])
    eligible = stage.keep("eligible", in_age & reduce(lambda a, b: a | b, routes.values()))
    smoking = pl.col("smoking")
    return Outcome(
        category=pl.when(eligible)
        .then(CATEGORIES("eligible"))
        .when(~eligible)
        .then(CATEGORIES("not_eligible")),
        flags={**routes, f"age_outside_{age['min']:g}_{age['max']:g}": ~in_age},
        needed={"pack_years": smoking != "never", "years_since_quit": smoking == "former"},
    )


def _china(stage: Stage) -> Outcome:
    criteria = CHINA_DOC["criteria"]
    return _outcome(
        stage,
        criteria,
        {
            "heavy_smoking": _heavy_smoking(criteria["heavy_smoking"]),
            "passive_smoking": pl.col("passive_smoking_years") > criteria["passive_smoking"]["years_above"],
            "copd": pl.col("copd"),
            "occupational_exposure": pl.col("occupational_exposure"),
            "family_history_lung_cancer": pl.col("family_history_lung_cancer"),
        },
    )


def _uspstf(stage: Stage) -> Outcome:
    criteria = USPSTF_DOC["criteria"]
    return _outcome(stage, criteria, {"heavy_smoking": _heavy_smoking(criteria["heavy_smoking"])})


CHINA: Model = define(
    CHINA_DOC,
    categories=CATEGORIES,
    required=(
        "age",
        "smoking",
        "pack_years",
        "years_since_quit",
        "passive_smoking_years",
        "copd",
        "occupational_exposure",
        "family_history_lung_cancer",
    ),
    build=_china,
)
USPSTF: Model = define(
    USPSTF_DOC,
    categories=CATEGORIES,
    required=("age", "smoking", "pack_years", "years_since_quit"),
    build=_uspstf,
    population=False,
)
