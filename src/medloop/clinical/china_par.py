"""China-PAR 10-year ASCVD risk (data: data/china_par.yaml, reference pack §1).

    risk(%) = 100 × (1 − exp(−exp(z))),  z = Σ βᵢ·xᵢ + intercept

with sex-specific coefficients; TC and HDL-C in mg/dL. Only the terms that have a coefficient for
the person's sex enter z, so urban and family history are not needed for women.
"""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import Categories, Model, Outcome, Stage, define, model_data, outside

DOC = model_data("china_par")
BANDS = DOC["categories"]["bands"]
CATEGORIES = Categories([b["category"] for b in BANDS])


def risk_category(risk: pl.Expr) -> pl.Expr:
    """Category code of a 10-year risk in % (< 5 low, 5 – < 10 intermediate, ≥ 10 high)."""
    return CATEGORIES.banded(risk, BANDS)


def _z(sex: str) -> pl.Expr:
    beta: dict[str, float] = DOC["coefficients"][sex]
    per_mgdl = DOC["mmol_per_mgdl"]
    ln_age = pl.col("age").cast(pl.Float64).log()
    ln_sbp = pl.col("sbp").log()
    treated = pl.col("bp_treated").cast(pl.Float64)
    untreated = 1.0 - treated
    smoker = (pl.col("smoking") == "current").cast(pl.Float64)
    family = pl.col("family_history_ascvd").cast(pl.Float64)
    terms = {
        "ln_age": ln_age,
        "ln_sbp_treated": ln_sbp * treated,
        "ln_sbp_untreated": ln_sbp * untreated,
        "ln_tc": (pl.col("tc_mmol") / per_mgdl).log(),
        "ln_hdl": (pl.col("hdl_mmol") / per_mgdl).log(),
        "ln_waist": pl.col("waist_cm").log(),
        "smoker": smoker,
        "diabetes": pl.col("diabetes").cast(pl.Float64),
        "north": pl.col("north").cast(pl.Float64),
        "urban": pl.col("urban").cast(pl.Float64),
        "family_history": family,
        "ln_age_x_ln_sbp_treated": ln_age * ln_sbp * treated,
        "ln_age_x_ln_sbp_untreated": ln_age * ln_sbp * untreated,
        "ln_age_x_smoker": ln_age * smoker,
        "ln_age_x_family_history": ln_age * family,
    }
    z: pl.Expr = pl.lit(beta["intercept"])
    for term, coefficient in beta.items():
        if term != "intercept":
            z = z + coefficient * terms[term]
    return z


def ten_year_risk() -> pl.Expr:
    """10-year ASCVD risk in %."""
    sex = pl.col("sex")
    z = pl.when(sex == "M").then(_z("M")).when(sex == "F").then(_z("F")).otherwise(None)
    return 100.0 * (1.0 - (-(z.exp())).exp())


def _build(stage: Stage) -> Outcome:
    risk = stage.keep("risk", ten_year_risk())
    code, rule = outside("age", MODEL.valid["age"])
    men_only = pl.col("sex") == "M"
    return Outcome(
        category=risk_category(risk),
        score=risk,
        not_applicable={code: rule},
        needed={"urban": men_only, "family_history_ascvd": men_only},
    )


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=(
        "sex",
        "age",
        "sbp",
        "bp_treated",
        "tc_mmol",
        "hdl_mmol",
        "waist_cm",
        "smoking",
        "diabetes",
        "north",
        "urban",
        "family_history_ascvd",
    ),
    build=_build,
)
