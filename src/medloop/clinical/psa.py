"""PSA triage for prostate-cancer screening (data: data/psa.yaml, reference pack §8, UNCONFIRMED).
Men from above 50, above 45 with a family history, above 40 with PSA > 1 µg/L; PSA < 4 → rescreen
in 2 years; 4–10 → repeat in 3–6 months with free/total PSA and MRI; > 10 → biopsy referral."""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import Categories, Model, Outcome, Stage, define, model_data

DOC = model_data("psa")
START, TRIAGE = DOC["start"], DOC["triage"]
CATEGORIES = Categories([b["category"] for b in TRIAGE["bands"]])


def starts_screening() -> pl.Expr:
    """Whether a man has reached the age to start (three-valued: null when undetermined)."""
    age, psa = pl.col("age"), pl.col("psa")
    return (
        (age > START["age_above"])
        | ((age > START["age_above_with_family_history"]) & pl.col("family_history_prostate_cancer"))
        | ((age > START["age_above_with_psa"]) & (psa > START["psa_above"]))
    )


def _build(stage: Stage) -> Outcome:
    male, start = pl.col("sex") == "M", stage.keep("start", starts_screening())
    category = stage.keep(
        "category", pl.when(male & start).then(CATEGORIES.banded(pl.col("psa"), TRIAGE["bands"]))
    )
    flags = {
        code: category.is_in(CATEGORIES.codes([c for c, codes in TRIAGE["flags"].items() if code in codes]))
        for code in sorted({code for codes in TRIAGE["flags"].values() for code in codes})
    }
    return Outcome(
        category=category,
        flags=flags,
        not_applicable={"not_male": pl.col("sex") == "F", "below_start_age": male & ~start},
        needed={"family_history_prostate_cancer": pl.col("age") <= START["age_above"]},
    )


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=("sex", "age", "psa"),
    optional=("family_history_prostate_cancer",),
    build=_build,
)
