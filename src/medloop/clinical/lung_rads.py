"""Lung-RADS v2022 category and management of an LDCT nodule (data: data/lung_rads.yaml, reference
pack §5). Sizes are mean diameters: (long axis + short axis) / 2. An encounter model."""

from __future__ import annotations

import polars as pl

from medloop.clinical.scoring import Categories, Model, Outcome, Stage, define, model_data

DOC = model_data("lung_rads")
SOLID, PART, NON_SOLID, MANAGEMENT = DOC["solid"], DOC["part_solid"], DOC["non_solid"], DOC["management"]
UPGRADES = DOC["suspicious"]["upgrades"]
LABELS = (DOC["no_nodule"]["category"], "2", "3", "4A", "4B", DOC["suspicious"]["category"])
CATEGORIES = Categories(LABELS)


def mean_diameter() -> pl.Expr:
    return (pl.col("nodule_long_mm") + pl.col("nodule_short_mm")) / 2.0


def base_category(mean: pl.Expr) -> pl.Expr:
    """Category code before suspicious features are considered, given the mean diameter."""
    kind, status = pl.col("nodule_type"), pl.col("nodule_status")
    solid = (
        pl.when(status == "baseline")
        .then(CATEGORIES.banded(mean, SOLID["baseline"]))
        .when(status == "new")
        .then(CATEGORIES.banded(mean, SOLID["new"]))
        .when(status == "growing")
        .then(CATEGORIES.banded(mean, SOLID["growing"]))
    )
    part_solid = (
        pl.when(mean < PART["total_below_category_2"])
        .then(CATEGORIES("2"))
        .otherwise(CATEGORIES.banded(pl.col("solid_component_mm"), PART["solid_component"]))
    )
    non_solid = pl.when(mean < NON_SOLID["below_mm"]).then(CATEGORIES(NON_SOLID["category"]))
    return (
        pl.when(kind == "none")
        .then(CATEGORIES(DOC["no_nodule"]["category"]))
        .when(kind == "solid")
        .then(solid)
        .when(kind == "part_solid")
        .then(part_solid)
        .when(kind == "non_solid")
        .then(non_solid)
    )


def _build(stage: Stage) -> Outcome:
    kind, suspicious = pl.col("nodule_type"), pl.col("suspicious_features")
    mean = stage.keep("mean", mean_diameter())
    base = stage.keep("base", base_category(mean))
    upgradable = base.is_in(CATEGORIES.codes(UPGRADES))
    # 4X needs suspicious features to be reported; a report without them is not upgraded.
    category = stage.keep(
        "category",
        pl.when(upgradable & suspicious).then(CATEGORIES(DOC["suspicious"]["category"])).otherwise(base),
    )
    solid_part = (
        pl.when(kind == "solid").then(mean).when(kind == "part_solid").then(pl.col("solid_component_mm"))
    )
    codes = sorted({code for cat, codes in MANAGEMENT.items() if cat in LABELS for code in codes})
    flags = {
        code: category.is_in(CATEGORIES.codes([c for c in LABELS if code in MANAGEMENT[c]])) for code in codes
    }
    flags["pet_ct"] = flags["pet_ct"] | (
        category.is_in(CATEGORIES.codes(["4A"])) & (solid_part >= MANAGEMENT["pet_ct_4a_solid_min_mm"])
    )
    flags["suspicious_features_not_recorded"] = upgradable & suspicious.is_null()
    nodule = kind != "none"
    return Outcome(
        category=category,
        score=pl.when(nodule).then(mean),
        flags=flags,
        not_applicable={
            f"non_solid_{NON_SOLID['below_mm']:g}mm_or_more_not_covered": (kind == "non_solid")
            & (mean >= NON_SOLID["below_mm"]),
        },
        needed={
            "nodule_status": kind == "solid",
            "nodule_long_mm": nodule,
            "nodule_short_mm": nodule,
            "solid_component_mm": (kind == "part_solid") & (mean >= PART["total_below_category_2"]),
            "suspicious_features": pl.lit(False),
        },
    )


MODEL: Model = define(
    DOC,
    categories=CATEGORIES,
    required=("nodule_type", "nodule_status", "nodule_long_mm", "nodule_short_mm"),
    optional=("solid_component_mm", "suspicious_features"),
    build=_build,
    population=False,
)
