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


MEN_ONLY = {"urban", "family_history", "ln_age_x_family_history"}
TERMS = {
    "intercept",
    "ln_age",
    "ln_sbp_treated",
    "ln_sbp_untreated",
    "ln_tc",
    "ln_hdl",
    "ln_waist",
    "smoker",
    "diabetes",
    "north",
    "ln_age_x_ln_sbp_treated",
    "ln_age_x_ln_sbp_untreated",
    "ln_age_x_smoker",
    *MEN_ONLY,
}


def _check_terms() -> None:
    """The data file's coefficients are for terms that ten_year_risk() computes."""
    for sex, allowed in (("M", TERMS), ("F", TERMS - MEN_ONLY)):
        unknown = set(DOC["coefficients"][sex]) - allowed
        if unknown:
            raise ValueError(f"china_par.yaml: {sex} has terms the model does not compute: {sorted(unknown)}")


_check_terms()


def _beta(term: str) -> pl.Expr:
    """Each person's coefficient of `term`: their sex's (0 where that sex's equation lacks it)."""
    men, women = DOC["coefficients"]["M"], DOC["coefficients"]["F"]
    return pl.when(pl.col("sex") == "M").then(men.get(term, 0.0)).otherwise(women.get(term, 0.0))


def _either(condition: pl.Expr, yes: pl.Expr | float, no: pl.Expr | float) -> pl.Expr:
    """`yes` where condition holds, `no` where it does not, null where it is unknown."""
    return pl.when(condition).then(yes).when(~condition).then(no)


def ten_year_risk() -> pl.Expr:
    """10-year ASCVD risk in %: z = Σ βᵢ·xᵢ + intercept with each person's sex's coefficients.

    The sum is regrouped so that one pass over the rows serves both sexes and both treatment
    states (computing each sex's equation for every row took twice the time): the SBP terms are
    ln SBP × (β_sbp + β_age×sbp · ln age) with the treated or untreated βs, the smoking terms
    smoker × (β_smoker + β_age×smoker · ln age), and urban and family history enter for men only."""
    men = DOC["coefficients"]["M"]
    per_mgdl = DOC["mmol_per_mgdl"]
    sex, b = pl.col("sex"), _beta
    ln_age = pl.col("age").cast(pl.Float64).log()
    sbp_slope = _either(
        pl.col("bp_treated"),
        b("ln_sbp_treated") + b("ln_age_x_ln_sbp_treated") * ln_age,
        b("ln_sbp_untreated") + b("ln_age_x_ln_sbp_untreated") * ln_age,
    )
    smoking = _either(pl.col("smoking") == "current", b("smoker") + b("ln_age_x_smoker") * ln_age, 0.0)
    family = _either(
        pl.col("family_history_ascvd"), men["family_history"] + men["ln_age_x_family_history"] * ln_age, 0.0
    )
    men_only = _either(sex == "M", men["urban"] * pl.col("urban").cast(pl.Float64) + family, 0.0)
    z = (
        b("intercept")
        + b("ln_age") * ln_age
        + sbp_slope * pl.col("sbp").log()
        + b("ln_tc") * (pl.col("tc_mmol") / per_mgdl).log()
        + b("ln_hdl") * (pl.col("hdl_mmol") / per_mgdl).log()
        + b("ln_waist") * pl.col("waist_cm").log()
        + smoking
        + b("diabetes") * pl.col("diabetes").cast(pl.Float64)
        + b("north") * pl.col("north").cast(pl.Float64)
        + men_only
    )
    return pl.when(sex.is_in(["M", "F"])).then(100.0 * (1.0 - (-(z.exp())).exp()))


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
