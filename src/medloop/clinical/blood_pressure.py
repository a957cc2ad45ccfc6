"""Office blood-pressure classification by the Chinese hypertension guideline (data:
data/blood_pressure.yaml, reference pack §6). SBP and DBP are graded separately and the higher grade
applies; isolated systolic hypertension (SBP ≥ 140 and DBP < 90) is flagged."""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import CODE, Categories, Model, Outcome, Stage, banded, define, model_data

DOC = model_data("blood_pressure")
GRADES = DOC["grades"]
LEVELS = Categories(GRADES["levels"])  # a level's code is its index: 0 normal … 4 grade 3


def higher(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """The higher of two levels; null if either is unknown."""
    return pl.when(a.is_null() | b.is_null()).then(None).when(a >= b).then(a).otherwise(b)


def _build(stage: Stage) -> Outcome:
    sbp_level = stage.keep("sbp_level", banded(pl.col("sbp"), GRADES["sbp"], "level", CODE))
    dbp_level = stage.keep("dbp_level", banded(pl.col("dbp"), GRADES["dbp"], "level", CODE))
    level = higher(sbp_level, dbp_level)
    isolated, critical = DOC["isolated_systolic"], DOC["critical"]
    sbp, dbp = pl.col("sbp"), pl.col("dbp")
    return Outcome(
        category=level,
        flags={
            "isolated_systolic": (sbp >= isolated["sbp_min"]) & (dbp < isolated["dbp_below"]),
            "critical": (sbp >= critical["sbp_min"]) | (dbp >= critical["dbp_min"]),
        },
    )


MODEL: Model = define(DOC, categories=LEVELS, required=("sbp", "dbp"), build=_build)
