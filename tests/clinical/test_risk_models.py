"""The screening risk models against the clinical reference pack: its worked examples and every
boundary it names, through the per-person path (which runs the population code on one row)."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from medloop.clinical import china_par
from medloop.screening.person import score_person


def run(model: str, inputs: dict[str, Any], **change: Any) -> dict[str, Any]:
    return score_person(model, {**inputs, **change})


def category(model: str, inputs: dict[str, Any], **change: Any) -> str:
    return str(run(model, inputs, **change)["category"])


def score(model: str, inputs: dict[str, Any], **change: Any) -> float:
    value = run(model, inputs, **change)["score"]
    assert value is not None
    return float(value)


# --- China-PAR -----------------------------------------------------------------------------------

GUIDELINE_MAN = {
    "sex": "M",
    "age": 40,
    "north": True,
    "urban": True,
    "waist_cm": 80,
    "tc_mmol": 5.2,
    "hdl_mmol": 1.3,
    "sbp": 145,
    "bp_treated": False,
    "diabetes": False,
    "smoking": "never",
    "family_history_ascvd": True,
}


def test_china_par_worked_example() -> None:
    result = run("china_par", GUIDELINE_MAN)
    assert result["score"] == pytest.approx(4.7, abs=0.3)
    assert result["category"] == "low"
    assert result["model_version"] == china_par.MODEL.version
    assert result["reasons"] == []


def _formula(p: dict[str, Any]) -> float:
    """The pack's formula written out by hand with the data file's coefficients."""
    beta = china_par.DOC["coefficients"][p["sex"]]
    mgdl = china_par.DOC["mmol_per_mgdl"]
    la, ls = math.log(p["age"]), math.log(p["sbp"])
    t = 1.0 if p["bp_treated"] else 0.0
    smoker = 1.0 if p["smoking"] == "current" else 0.0
    fh = 1.0 if p.get("family_history_ascvd") else 0.0
    x = {
        "ln_age": la,
        "ln_sbp_treated": ls * t,
        "ln_sbp_untreated": ls * (1 - t),
        "ln_tc": math.log(p["tc_mmol"] / mgdl),
        "ln_hdl": math.log(p["hdl_mmol"] / mgdl),
        "ln_waist": math.log(p["waist_cm"]),
        "smoker": smoker,
        "diabetes": float(p["diabetes"]),
        "north": float(p["north"]),
        "urban": float(p.get("urban") or 0),
        "family_history": fh,
        "ln_age_x_ln_sbp_treated": la * ls * t,
        "ln_age_x_ln_sbp_untreated": la * ls * (1 - t),
        "ln_age_x_smoker": la * smoker,
        "ln_age_x_family_history": la * fh,
    }
    z = beta["intercept"] + sum(b * x[k] for k, b in beta.items() if k != "intercept")
    return 100 * (1 - math.exp(-math.exp(z)))


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"sex": "F", "urban": None, "family_history_ascvd": None},
        {"sex": "F", "bp_treated": True, "smoking": "current", "diabetes": True, "age": 66},
        {"bp_treated": True, "smoking": "current", "age": 58, "north": False, "urban": False},
        {"smoking": "former", "family_history_ascvd": False, "sbp": 172, "waist_cm": 96},
    ],
)
def test_china_par_matches_formula(change: dict[str, Any]) -> None:
    person = {**GUIDELINE_MAN, **change}
    assert score("china_par", person) == pytest.approx(_formula(person), rel=1e-9)


@pytest.mark.parametrize(
    ("risk", "expected"),
    [
        (0.0, "low"),
        (4.999, "low"),
        (5.0, "intermediate"),
        (9.999, "intermediate"),
        (10.0, "high"),
        (60.0, "high"),
    ],
)
def test_china_par_category_boundaries(risk: float, expected: str) -> None:
    code = pl.select(china_par.risk_category(pl.lit(risk))).item()
    assert china_par.MODEL.categories[code] == expected


@pytest.mark.parametrize(("age", "applies"), [(34, False), (35, True), (74, True), (75, False), (90, False)])
def test_china_par_valid_ages(age: int, applies: bool) -> None:
    result = run("china_par", GUIDELINE_MAN, age=age)
    if applies:
        assert result["category"] in china_par.MODEL.categories
    else:
        assert (result["category"], result["score"], result["reasons"]) == (
            "not_applicable",
            None,
            ["age_outside_35_74"],
        )


@pytest.mark.parametrize("sex", ["M", "F"])
@pytest.mark.parametrize(
    "field",
    ["sex", "age", "sbp", "bp_treated", "tc_mmol", "hdl_mmol", "waist_cm", "smoking", "diabetes", "north"],
)
def test_china_par_an_unknown_input_leaves_the_risk_open(sex: str, field: str) -> None:
    result = run("china_par", {**GUIDELINE_MAN, "sex": sex}, **{field: None})
    assert (result["category"], result["score"]) == ("insufficient_data", None)
    assert f"missing:{field}" in result["reasons"]


def test_china_par_women_need_no_urban_or_family_history() -> None:
    assert category("china_par", GUIDELINE_MAN, sex="F", urban=None, family_history_ascvd=None) == "low"
    men = run("china_par", GUIDELINE_MAN, urban=None)
    assert (men["category"], men["reasons"]) == ("insufficient_data", ["missing:urban"])


# --- CDRS ----------------------------------------------------------------------------------------

CDRS_MAN = {
    "sex": "M",
    "age": 52,
    "height_cm": 100,
    "weight_kg": 25,
    "waist_cm": 88,
    "sbp": 135,
    "family_history_diabetes": True,
}
CDRS_ZERO = {
    "sex": "F",
    "age": 20,
    "height_cm": 100,
    "weight_kg": 20,
    "waist_cm": 60,
    "sbp": 100,
    "family_history_diabetes": False,
}


def test_cdrs_worked_example() -> None:
    result = run("cdrs", CDRS_MAN)
    assert (result["score"], result["category"]) == (37, "high")


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [
        ("age", 20, 0),
        ("age", 24, 0),
        ("age", 25, 4),
        ("age", 34, 4),
        ("age", 35, 8),
        ("age", 39, 8),
        ("age", 40, 11),
        ("age", 44, 11),
        ("age", 45, 12),
        ("age", 49, 12),
        ("age", 50, 13),
        ("age", 54, 13),
        ("age", 55, 15),
        ("age", 59, 15),
        ("age", 60, 16),
        ("age", 64, 16),
        ("age", 65, 18),
        ("age", 74, 18),
        ("weight_kg", 21.99, 0),
        ("weight_kg", 22, 1),
        ("weight_kg", 23.9, 1),
        ("weight_kg", 24, 3),
        ("weight_kg", 29.9, 3),
        ("weight_kg", 30, 5),
        ("waist_cm", 69.9, 0),
        ("waist_cm", 70, 3),
        ("waist_cm", 74.9, 3),
        ("waist_cm", 75, 5),
        ("waist_cm", 79.9, 5),
        ("waist_cm", 80, 7),
        ("waist_cm", 84.9, 7),
        ("waist_cm", 85, 8),
        ("waist_cm", 89.9, 8),
        ("waist_cm", 90, 10),
        ("sbp", 109, 0),
        ("sbp", 110, 1),
        ("sbp", 119, 1),
        ("sbp", 120, 3),
        ("sbp", 129, 3),
        ("sbp", 130, 6),
        ("sbp", 139, 6),
        ("sbp", 140, 7),
        ("sbp", 149, 7),
        ("sbp", 150, 8),
        ("sbp", 159, 8),
        ("sbp", 160, 10),
        ("family_history_diabetes", True, 6),
    ],
)
def test_cdrs_points_women(item: str, value: Any, points: int) -> None:
    assert score("cdrs", CDRS_ZERO, **{item: value}) == points


@pytest.mark.parametrize(
    ("waist", "points"),
    [(74.9, 0), (75, 3), (79.9, 3), (80, 5), (84.9, 5), (85, 7), (89.9, 7), (90, 8), (94.9, 8), (95, 10)],
)
def test_cdrs_waist_men(waist: float, points: int) -> None:
    male = 2
    assert score("cdrs", CDRS_ZERO, sex="M", waist_cm=waist) == male + points


def test_cdrs_range_and_cut_off() -> None:
    top = {
        "sex": "M",
        "age": 70,
        "height_cm": 100,
        "weight_kg": 35,
        "waist_cm": 100,
        "sbp": 170,
        "family_history_diabetes": True,
    }
    assert (score("cdrs", CDRS_ZERO), score("cdrs", top)) == (0, 51)
    # 24 → low, 25 → high: 18 (age 65) + 6 (family history) = 24; + BMI 22 = 25.
    assert category("cdrs", CDRS_ZERO, age=65, family_history_diabetes=True) == "low"
    assert category("cdrs", CDRS_ZERO, age=65, family_history_diabetes=True, weight_kg=22) == "high"


@pytest.mark.parametrize(
    ("age", "expected"), [(19, "not_applicable"), (20, "low"), (74, "high"), (75, "not_applicable")]
)
def test_cdrs_valid_ages(age: int, expected: str) -> None:
    assert category("cdrs", CDRS_MAN, age=age, sbp=100 if age == 20 else 135) == expected


# --- COPD-SQ -------------------------------------------------------------------------------------

COPD_EXAMPLE = {
    "age": 62,
    "smoking": "current",
    "pack_years": 20,
    "height_cm": 100,
    "weight_kg": 22,
    "chronic_cough": True,
    "dyspnea": "exertion",
    "biomass_exposure": False,
    "family_history_respiratory": False,
}
COPD_ZERO = {
    "age": 40,
    "smoking": "never",
    "pack_years": 0,
    "height_cm": 100,
    "weight_kg": 30,
    "chronic_cough": False,
    "dyspnea": "none",
    "biomass_exposure": False,
    "family_history_respiratory": False,
}


def test_copd_sq_worked_example() -> None:
    result = run("copd_sq", COPD_EXAMPLE)
    assert (result["score"], result["category"]) == (23, "high")


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [
        ("age", 40, 0),
        ("age", 49, 0),
        ("age", 50, 3),
        ("age", 59, 3),
        ("age", 60, 7),
        ("age", 69, 7),
        ("age", 70, 10),
        ("age", 95, 10),
        ("pack_years", 0, 0),
        ("pack_years", 0.5, 2),
        ("pack_years", 1, 2),
        ("pack_years", 14, 2),
        ("pack_years", 15, 4),
        ("pack_years", 30, 4),
        ("pack_years", 30.5, 5),
        ("pack_years", 31, 5),
        ("weight_kg", 18.49, 7),
        ("weight_kg", 18.5, 4),
        ("weight_kg", 23.9, 4),
        ("weight_kg", 24, 1),
        ("weight_kg", 27.9, 1),
        ("weight_kg", 28, 0),
        ("chronic_cough", True, 5),
        ("dyspnea", "exertion", 3),
        ("dyspnea", "flat", 6),
        ("biomass_exposure", True, 1),
        ("family_history_respiratory", True, 3),
    ],
)
def test_copd_sq_points(item: str, value: Any, points: int) -> None:
    assert score("copd_sq", COPD_ZERO, **{item: value}) == points


# Heights and weights whose BMI is exactly a band's lower bound; computed in floating point without
# rounding, each comes out just below it (e.g. 160 cm, 61.44 kg → 23.999999999999993).
ON_A_BMI_BOUND = [
    (160, 47.36, 18.5),
    (180, 59.94, 18.5),
    (160, 56.32, 22),
    (155, 57.66, 24),
    (160, 61.44, 24),
    (185, 82.14, 24),
    (155, 67.27, 28),
    (160, 71.68, 28),
    (180, 90.72, 28),
    (160, 76.8, 30),
]
CDRS_BMI_POINTS = {18.5: 0, 22: 1, 24: 3, 28: 3, 30: 5}
COPD_SQ_BMI_POINTS = {18.5: 4, 22: 4, 24: 1, 28: 0, 30: 0}


@pytest.mark.parametrize(("height_cm", "weight_kg", "bmi"), ON_A_BMI_BOUND)
def test_a_bmi_on_a_band_bound_is_in_that_band(height_cm: int, weight_kg: float, bmi: float) -> None:
    body = {"height_cm": height_cm, "weight_kg": weight_kg}
    assert score("cdrs", CDRS_ZERO, **body) == CDRS_BMI_POINTS[bmi]
    assert score("copd_sq", COPD_ZERO, **body) == COPD_SQ_BMI_POINTS[bmi]


def test_copd_sq_cut_off_and_ages() -> None:
    # 10 (age 70) + 5 (cough) = 15 → low; + 1 (biomass) = 16 → high.
    assert category("copd_sq", COPD_ZERO, age=70, chronic_cough=True) == "low"
    assert category("copd_sq", COPD_ZERO, age=70, chronic_cough=True, biomass_exposure=True) == "high"
    assert run("copd_sq", COPD_ZERO, age=39)["reasons"] == ["age_below_40"]


def test_copd_sq_never_smoker_without_pack_years_counts_zero() -> None:
    assert score("copd_sq", COPD_ZERO, pack_years=None) == 0
    result = run("copd_sq", COPD_ZERO, smoking="current", pack_years=None)
    assert (result["category"], result["reasons"]) == ("insufficient_data", ["missing:pack_years"])


# --- HEART ---------------------------------------------------------------------------------------

HEART_ZERO = {
    "heart_history": "slightly",
    "heart_ecg": "normal",
    "age": 30,
    "heart_risk_factors": 0,
    "atherosclerotic_disease": False,
    "troponin_ratio": 0.5,
}


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [
        ("heart_history", "moderately", 1),
        ("heart_history", "highly", 2),
        ("heart_ecg", "nonspecific", 1),
        ("heart_ecg", "st_deviation", 2),
        ("age", 44, 0),
        ("age", 45, 1),
        ("age", 64, 1),
        ("age", 65, 2),
        ("heart_risk_factors", 1, 1),
        ("heart_risk_factors", 2, 1),
        ("heart_risk_factors", 3, 2),
        ("atherosclerotic_disease", True, 2),
        ("troponin_ratio", 1.0, 0),
        ("troponin_ratio", 1.01, 1),
        ("troponin_ratio", 3.0, 1),
        ("troponin_ratio", 3.01, 2),
    ],
)
def test_heart_components(item: str, value: Any, points: int) -> None:
    assert score("heart", HEART_ZERO, **{item: value}) == points


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"heart_history": "highly", "heart_ecg": "nonspecific"}, "low"),  # 3
        ({"heart_history": "highly", "heart_ecg": "st_deviation"}, "moderate"),  # 4
        ({"heart_history": "highly", "heart_ecg": "st_deviation", "age": 65}, "moderate"),  # 6
        (
            {"heart_history": "highly", "heart_ecg": "st_deviation", "age": 65, "heart_risk_factors": 1},
            "high",
        ),  # 7
    ],
)
def test_heart_bands(change: dict[str, Any], expected: str) -> None:
    assert category("heart", HEART_ZERO, **change) == expected


def test_heart_known_disease_needs_no_count() -> None:
    assert score("heart", HEART_ZERO, heart_risk_factors=None, atherosclerotic_disease=True) == 2
    result = run("heart", HEART_ZERO, atherosclerotic_disease=None)
    assert result["reasons"] == ["missing:atherosclerotic_disease"]


# --- Lung-cancer screening eligibility -----------------------------------------------------------

LUNG_NONE = {
    "age": 60,
    "smoking": "never",
    "pack_years": 0,
    "years_since_quit": None,
    "passive_smoking_years": 0,
    "copd": False,
    "occupational_exposure": False,
    "family_history_lung_cancer": False,
}


@pytest.mark.parametrize(
    ("change", "expected", "flags"),
    [
        ({}, "not_eligible", []),
        ({"smoking": "current", "pack_years": 30}, "eligible", ["heavy_smoking"]),
        ({"smoking": "current", "pack_years": 29.9}, "not_eligible", []),
        ({"smoking": "former", "pack_years": 30, "years_since_quit": 14.9}, "eligible", ["heavy_smoking"]),
        ({"smoking": "former", "pack_years": 30, "years_since_quit": 15}, "not_eligible", []),
        ({"passive_smoking_years": 20}, "not_eligible", []),
        ({"passive_smoking_years": 20.5}, "eligible", ["passive_smoking"]),
        ({"copd": True}, "eligible", ["copd"]),
        ({"occupational_exposure": True}, "eligible", ["occupational_exposure"]),
        ({"family_history_lung_cancer": True}, "eligible", ["family_history_lung_cancer"]),
        ({"copd": True, "age": 49}, "not_eligible", ["copd", "age_outside_50_74"]),
        ({"copd": True, "age": 50}, "eligible", ["copd"]),
        ({"copd": True, "age": 74}, "eligible", ["copd"]),
        ({"copd": True, "age": 75}, "not_eligible", ["copd", "age_outside_50_74"]),
    ],
)
def test_lung_screening_china(change: dict[str, Any], expected: str, flags: list[str]) -> None:
    result = run("lung_screening", LUNG_NONE, **change)
    assert (result["category"], result["flags"]) == (expected, flags)


def test_lung_screening_is_three_valued() -> None:
    assert category("lung_screening", {"age": 60, "copd": True}) == "eligible"
    result = run("lung_screening", {**LUNG_NONE, "occupational_exposure": None})
    assert (result["category"], result["reasons"]) == ("insufficient_data", ["missing:occupational_exposure"])


USPSTF_BASE = {"age": 60, "smoking": "current", "pack_years": 20, "years_since_quit": None}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "eligible"),
        ({"pack_years": 19.9}, "not_eligible"),
        ({"age": 49}, "not_eligible"),
        ({"age": 50}, "eligible"),
        ({"age": 80}, "eligible"),
        ({"age": 81}, "not_eligible"),
        ({"smoking": "former", "years_since_quit": 15}, "eligible"),
        ({"smoking": "former", "years_since_quit": 15.5}, "not_eligible"),
        ({"smoking": "never", "pack_years": 0}, "not_eligible"),
    ],
)
def test_lung_screening_uspstf(change: dict[str, Any], expected: str) -> None:
    assert category("lung_screening_uspstf", USPSTF_BASE, **change) == expected


# --- Lung-RADS v2022 -----------------------------------------------------------------------------


def nodule(kind: str, long: float, short: float, status: str = "baseline", **more: Any) -> dict[str, Any]:
    return {
        "nodule_type": kind,
        "nodule_status": status,
        "nodule_long_mm": long,
        "nodule_short_mm": short,
        **more,
    }


def test_lung_rads_worked_example() -> None:
    result = score_person("lung_rads", nodule("solid", 7.4, 5.9))
    assert (result["score"], result["category"]) == (pytest.approx(6.65), "3")
    assert "ldct_6_months" in result["flags"]


@pytest.mark.parametrize(
    ("status", "mean", "expected"),
    [
        ("baseline", 5.9, "2"),
        ("baseline", 6, "3"),
        ("baseline", 7.9, "3"),
        ("baseline", 8, "4A"),
        ("baseline", 14.9, "4A"),
        ("baseline", 15, "4B"),
        ("new", 3.9, "2"),
        ("new", 4, "3"),
        ("new", 5.9, "3"),
        ("new", 6, "4A"),
        ("new", 7.9, "4A"),
        ("new", 8, "4B"),
        ("growing", 3, "4A"),
        ("growing", 7.9, "4A"),
        ("growing", 8, "4B"),
    ],
)
def test_lung_rads_solid(status: str, mean: float, expected: str) -> None:
    assert category("lung_rads", nodule("solid", mean, mean, status)) == expected


@pytest.mark.parametrize(
    ("total", "solid", "expected"),
    [(5.9, 3, "2"), (6, 5.9, "3"), (10, 6, "4A"), (10, 7.9, "4A"), (12, 8, "4B")],
)
def test_lung_rads_part_solid(total: float, solid: float, expected: str) -> None:
    assert category("lung_rads", nodule("part_solid", total, total, solid_component_mm=solid)) == expected


def test_lung_rads_non_solid() -> None:
    assert category("lung_rads", nodule("non_solid", 29.9, 29.9)) == "2"
    result = score_person("lung_rads", nodule("non_solid", 30, 30))
    assert (result["category"], result["reasons"]) == (
        "not_applicable",
        ["non_solid_30mm_or_more_not_covered"],
    )


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (nodule("solid", 7, 7), "4X"),
        (nodule("solid", 10, 10), "4X"),
        (nodule("solid", 20, 20), "4X"),
        (nodule("solid", 5, 5), "2"),
    ],
)
def test_lung_rads_suspicious_features(found: dict[str, Any], expected: str) -> None:
    assert category("lung_rads", {**found, "suspicious_features": True}) == expected


@pytest.mark.parametrize(
    ("found", "flags"),
    [
        ({"nodule_type": "none"}, ["ldct_12_months"]),
        (nodule("solid", 5, 5), ["ldct_12_months"]),
        (nodule("solid", 7, 7, suspicious_features=False), ["ldct_6_months"]),
        (nodule("solid", 7, 6, "new", suspicious_features=False), ["ldct_3_months"]),  # 4A, solid 6.5 mm
        (nodule("solid", 10, 10, suspicious_features=False), ["ldct_3_months", "pet_ct"]),  # 4A, solid ≥ 8 mm
        (nodule("solid", 16, 16, suspicious_features=False), ["diagnostic_ct", "pet_ct", "tissue_sampling"]),
        (nodule("solid", 7, 7, suspicious_features=True), ["diagnostic_ct", "pet_ct", "tissue_sampling"]),
        (nodule("solid", 7, 7), ["ldct_6_months", "suspicious_features_not_recorded"]),
    ],
)
def test_lung_rads_management(found: dict[str, Any], flags: list[str]) -> None:
    assert score_person("lung_rads", found)["flags"] == flags


def test_lung_rads_no_nodule_is_category_1() -> None:
    result = score_person("lung_rads", {"nodule_type": "none"})
    assert (result["category"], result["score"]) == ("1", None)


# --- Blood pressure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sbp", "dbp", "expected", "flags"),
    [
        (119, 79, "normal", []),
        (120, 79, "high_normal", []),
        (119, 80, "high_normal", []),
        (139, 89, "high_normal", []),
        (140, 89, "grade_1", ["isolated_systolic"]),
        (139, 90, "grade_1", []),
        (159, 99, "grade_1", []),
        (160, 89, "grade_2", ["isolated_systolic"]),
        (160, 90, "grade_2", []),
        (150, 100, "grade_2", []),  # the higher grade applies
        (179, 109, "grade_2", []),
        (180, 80, "grade_3", ["isolated_systolic", "critical"]),
        (130, 110, "grade_3", ["critical"]),
        (150, 85, "grade_1", ["isolated_systolic"]),
        (145, 90, "grade_1", []),
    ],
)
def test_blood_pressure(sbp: float, dbp: float, expected: str, flags: list[str]) -> None:
    result = score_person("blood_pressure", {"sbp": sbp, "dbp": dbp})
    assert (result["category"], result["flags"]) == (expected, flags)


# --- Glucose / HbA1c -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"fpg_mmol": 6.09}, "normal"),
        ({"fpg_mmol": 6.1}, "ifg"),
        ({"fpg_mmol": 6.99}, "ifg"),
        ({"fpg_mmol": 7.0}, "diabetes"),
        ({"fpg_mmol": 5.0, "ogtt_2h_mmol": 7.79}, "normal"),
        ({"fpg_mmol": 5.0, "ogtt_2h_mmol": 7.8}, "igt"),
        ({"fpg_mmol": 5.0, "ogtt_2h_mmol": 11.09}, "igt"),
        ({"fpg_mmol": 5.0, "ogtt_2h_mmol": 11.1}, "diabetes"),
        ({"fpg_mmol": 6.5, "ogtt_2h_mmol": 7.7}, "ifg"),
        ({"fpg_mmol": 6.5, "ogtt_2h_mmol": 9.0}, "igt"),  # IFG needs 2-h < 7.8
        ({"fpg_mmol": 5.0, "hba1c_pct": 6.49}, "normal"),
        ({"fpg_mmol": 5.0, "hba1c_pct": 6.5}, "diabetes"),
        ({"hba1c_pct": 6.8}, "diabetes"),
        ({"fpg_mmol": 5.0, "random_glucose_mmol": 11.1, "diabetes_symptoms": True}, "diabetes"),
        ({"fpg_mmol": 5.0, "random_glucose_mmol": 11.1, "diabetes_symptoms": False}, "normal"),
        ({"fpg_mmol": 5.0, "random_glucose_mmol": 11.09, "diabetes_symptoms": True}, "normal"),
    ],
)
def test_glycaemia(inputs: dict[str, Any], expected: str) -> None:
    assert score_person("glycaemia", inputs)["category"] == expected


def test_glycaemia_flags() -> None:
    assert score_person("glycaemia", {"fpg_mmol": 7.2, "hba1c_pct": 6.6})["flags"] == [
        "fpg_diabetic",
        "hba1c_diabetic",
        "confirm_on_another_day",
    ]
    assert score_person("glycaemia", {"fpg_mmol": 5, "random_glucose_mmol": 12, "diabetes_symptoms": True})[
        "flags"
    ] == ["random_glucose_with_symptoms"]
    assert score_person("glycaemia", {"fpg_mmol": 6.5})["flags"] == ["ogtt_not_done"]
    missing = score_person("glycaemia", {"hba1c_pct": 5.5})
    assert (missing["category"], missing["reasons"]) == ("insufficient_data", ["missing:fpg_mmol"])


# --- Gastric cancer ------------------------------------------------------------------------------

GASTRIC_ZERO = {"age": 40, "sex": "F", "hp_positive": False, "pg_ratio": 5, "gastrin17": 1}


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [
        ("age", 49, 0),
        ("age", 50, 5),
        ("age", 59, 5),
        ("age", 60, 6),
        ("age", 69, 6),
        ("age", 70, 10),
        ("sex", "M", 4),
        ("hp_positive", True, 1),
        ("pg_ratio", 3.88, 3),
        ("pg_ratio", 3.89, 0),
        ("gastrin17", 1.49, 0),
        ("gastrin17", 1.5, 3),
        ("gastrin17", 5.7, 3),
        ("gastrin17", 5.71, 5),
    ],
)
def test_gastric_points(item: str, value: Any, points: int) -> None:
    assert score("gastric", GASTRIC_ZERO, **{item: value}) == points


@pytest.mark.parametrize(
    ("change", "total", "expected"),
    [
        ({"age": 70, "hp_positive": True}, 11, "low"),
        ({"age": 70, "pg_ratio": 3}, 13, "medium"),
        ({"age": 60, "sex": "M", "hp_positive": True, "gastrin17": 6}, 16, "medium"),
        ({"age": 70, "sex": "M", "pg_ratio": 3}, 17, "high"),
        ({"age": 70, "sex": "M", "hp_positive": True, "pg_ratio": 3, "gastrin17": 6}, 23, "high"),
        ({"age": 60, "sex": "M", "hp_positive": True, "gastrin17": 2}, 14, "medium"),
        ({"age": 50, "sex": "M", "gastrin17": 2}, 12, "medium"),
    ],
)
def test_gastric_bands(change: dict[str, Any], total: int, expected: str) -> None:
    result = run("gastric", GASTRIC_ZERO, **change)
    assert (result["score"], result["category"]) == (total, expected)


def test_gastric_from_age_40() -> None:
    assert run("gastric", GASTRIC_ZERO, age=39)["reasons"] == ["age_below_40"]


# --- PSA -----------------------------------------------------------------------------------------

MAN_60 = {"sex": "M", "age": 60, "psa": 2.0}


@pytest.mark.parametrize(
    ("psa", "expected", "flags"),
    [
        (3.99, "rescreen_2_years", []),
        (4.0, "repeat_3_6_months", ["free_total_psa", "mri"]),
        (10.0, "repeat_3_6_months", ["free_total_psa", "mri"]),
        (10.01, "biopsy_referral", []),
    ],
)
def test_psa_triage(psa: float, expected: str, flags: list[str]) -> None:
    result = run("psa", MAN_60, psa=psa)
    assert (result["category"], result["flags"]) == (expected, flags)


@pytest.mark.parametrize(
    ("change", "applies"),
    [
        ({"age": 50, "family_history_prostate_cancer": False, "psa": 0.5}, False),
        ({"age": 51, "psa": 0.5}, True),
        ({"age": 46, "family_history_prostate_cancer": True, "psa": 0.5}, True),
        ({"age": 45, "family_history_prostate_cancer": True, "psa": 0.5}, False),
        ({"age": 41, "family_history_prostate_cancer": False, "psa": 1.01}, True),
        ({"age": 41, "family_history_prostate_cancer": False, "psa": 1.0}, False),
        ({"age": 40, "family_history_prostate_cancer": False, "psa": 3.0}, False),
    ],
)
def test_psa_start(change: dict[str, Any], applies: bool) -> None:
    result = run("psa", MAN_60, **change)
    if applies:
        assert result["category"] == "rescreen_2_years"
    else:
        assert (result["category"], result["reasons"]) == ("not_applicable", ["below_start_age"])


def test_psa_women_and_unknown_family_history() -> None:
    assert run("psa", MAN_60, sex="F")["reasons"] == ["not_male"]
    result = run("psa", MAN_60, age=48, psa=0.5)
    assert (result["category"], result["reasons"]) == (
        "insufficient_data",
        ["missing:family_history_prostate_cancer"],
    )


# --- Errors, missing data ------------------------------------------------------------------------


def test_implausible_values_are_row_errors() -> None:
    result = run("china_par", GUIDELINE_MAN, age=200, sbp=20)
    assert (result["category"], result["score"]) == ("error", None)
    assert result["reasons"] == ["implausible:age", "implausible:sbp"]
    assert run("copd_sq", COPD_EXAMPLE, smoking="sometimes")["reasons"] == ["invalid:smoking"]
    assert run("blood_pressure", {"sbp": float("nan"), "dbp": 80})["reasons"] == ["implausible:sbp"]


def test_errors_win_over_not_applicable_and_missing() -> None:
    result = run("china_par", {"age": 20, "sbp": 20})
    assert (result["category"], result["reasons"]) == ("error", ["implausible:sbp"])
    result = run("china_par", {"age": 20})
    assert (result["category"], result["reasons"]) == ("not_applicable", ["age_outside_35_74"])


def test_missing_inputs_are_named() -> None:
    result = run("cdrs", CDRS_MAN, waist_cm=None, sbp=None)
    assert (result["category"], result["score"]) == ("insufficient_data", None)
    assert result["reasons"] == ["missing:waist_cm", "missing:sbp"]
