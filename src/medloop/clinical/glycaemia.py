"""Glucose / HbA1c classification (data: data/glycaemia.yaml, reference pack §7): diabetes, impaired
fasting glucose (IFG: FPG 6.1 – < 7.0 with 2-h < 7.8), impaired glucose tolerance (IGT: 2-h 7.8 – < 11.1).

Diabetes needs any one criterion. Otherwise the fasting glucose decides, with the 2-h OGTT value
when it was measured (IFG without an OGTT is flagged `ogtt_not_done`). Without typical symptoms a
diabetic value is to be confirmed on another day."""

from __future__ import annotations

from functools import reduce

import polars as pl

from medloop.clinical.scoring import Categories, Model, Outcome, Stage, define, model_data

DOC = model_data("glycaemia")
CATEGORIES = Categories(("diabetes", "ifg", "igt", "normal"))
OPTIONAL = ("hba1c_pct", "ogtt_2h_mmol", "random_glucose_mmol", "diabetes_symptoms")


def _build(stage: Stage) -> Outcome:
    diabetes, ifg_rule, igt_rule = DOC["diabetes"], DOC["ifg"], DOC["igt"]
    fpg, ogtt, symptoms = pl.col("fpg_mmol"), pl.col("ogtt_2h_mmol"), pl.col("diabetes_symptoms")
    criteria = {
        "fpg_diabetic": fpg >= diabetes["fpg_min"],
        "ogtt_diabetic": ogtt >= diabetes["ogtt_2h_min"],
        "hba1c_diabetic": pl.col("hba1c_pct") >= diabetes["hba1c_min"],
        "random_glucose_with_symptoms": symptoms
        & (pl.col("random_glucose_mmol") >= diabetes["random_with_symptoms_min"]),
    }
    has_diabetes = stage.keep("diabetes", reduce(lambda a, b: a | b, criteria.values()).fill_null(False))
    ifg = (fpg >= ifg_rule["fpg_min"]) & (fpg < diabetes["fpg_min"]) & ~(ogtt >= ifg_rule["ogtt_2h_below"])
    igt = (ogtt >= igt_rule["ogtt_2h_min"]) & (ogtt < diabetes["ogtt_2h_min"])
    category = stage.keep(
        "category",
        pl.when(has_diabetes)
        .then(CATEGORIES("diabetes"))
        .when(fpg.is_null())
        .then(None)
        .when(ifg.fill_null(True))
        .then(CATEGORIES("ifg"))
        .when(igt)
        .then(CATEGORIES("igt"))
        .otherwise(CATEGORIES("normal")),
    )
    return Outcome(
        category=category,
        flags={
            **criteria,
            "confirm_on_another_day": has_diabetes & ~symptoms.fill_null(False),
            "ogtt_not_done": category.is_in(CATEGORIES.codes(["ifg"])) & ogtt.is_null(),
        },
        needed={f: pl.lit(False) for f in OPTIONAL},  # only a missing FPG leaves the category open
    )


MODEL: Model = define(DOC, categories=CATEGORIES, required=("fpg_mmol",), optional=OPTIONAL, build=_build)
