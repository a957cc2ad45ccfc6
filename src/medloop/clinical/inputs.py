"""The inputs of the screening risk models: name, type, unit and data-quality limits.

The population contract (`medloop.screening.contract`) is the subset of these that a population
table carries; the rest are encounter inputs (HEART, Lung-RADS, OGTT, ...) given per person or in
tables that carry them. Limits come from data/screening_limits.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import polars as pl

from medloop.clinical.codes import load_data
from medloop.clinical.plausibility import rules

Kind = Literal["str", "int", "float", "bool", "enum"]

INVALID = "<invalid>"  # what an enum column holds where the table had a value that is not allowed

DTYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    unit: str | None
    description: str
    values: tuple[str, ...] = ()  # allowed values of an enum

    @property
    def dtype(self) -> pl.DataType:
        """Polars type of the typed column: an enum is a `pl.Enum` of its values and INVALID."""
        return pl.Enum([*self.values, INVALID]) if self.kind == "enum" else DTYPES[self.kind]


@dataclass(frozen=True)
class Limits:
    min: float
    max: float
    source: str
    confirmed: bool


POPULATION_FIELDS = (
    Field("sex", "enum", None, "Sex at birth.", ("M", "F")),
    Field("age", "int", "a", "Age in completed years."),
    Field("sbp", "float", "mm[Hg]", "Systolic blood pressure (office)."),
    Field("dbp", "float", "mm[Hg]", "Diastolic blood pressure (office)."),
    Field("bp_treated", "bool", None, "Currently taking antihypertensive medication."),
    Field("tc_mmol", "float", "mmol/L", "Total cholesterol."),
    Field("hdl_mmol", "float", "mmol/L", "HDL cholesterol."),
    Field("waist_cm", "float", "cm", "Waist circumference."),
    Field("height_cm", "float", "cm", "Body height."),
    Field("weight_kg", "float", "kg", "Body weight."),
    Field("smoking", "enum", None, "Smoking status.", ("never", "former", "current")),
    Field("pack_years", "float", "pack-years", "Packs (20 cigarettes) per day × years smoked."),
    Field("years_since_quit", "float", "a", "Years since quitting (former smokers)."),
    Field("diabetes", "bool", None, "Diagnosed diabetes."),
    Field("fpg_mmol", "float", "mmol/L", "Fasting plasma glucose."),
    Field("hba1c_pct", "float", "%", "Glycated haemoglobin (NGSP %)."),
    Field("family_history_ascvd", "bool", None, "Parent or sibling with ASCVD."),
    Field("family_history_diabetes", "bool", None, "First-degree relative with diabetes."),
    Field("north", "bool", None, "Lives in northern China (north of the Yangtze)."),
    Field("urban", "bool", None, "Lives in an urban area."),
    Field("chronic_cough", "bool", None, "Cough when not having a cold."),
    Field(
        "dyspnea",
        "enum",
        None,
        "Shortness of breath: none, when walking fast on the flat or uphill "
        "(exertion), at normal pace on the flat (flat).",
        ("none", "exertion", "flat"),
    ),
    Field("biomass_exposure", "bool", None, "Biomass or coal smoke for cooking/heating."),
    Field("family_history_respiratory", "bool", None, "Family history of respiratory disease."),
    Field("copd", "bool", None, "Diagnosed COPD."),
    Field(
        "occupational_exposure",
        "bool",
        None,
        "≥ 1 year of asbestos, radon, beryllium, chromium, cadmium, silicon, coal smoke or soot exposure.",
    ),
    Field("family_history_lung_cancer", "bool", None, "First-degree relative with lung cancer."),
    Field(
        "passive_smoking_years",
        "float",
        "a",
        "Years of passive smoking (household/workplace); for lung "
        "screening, exposure to a member who meets the heavy-smoking criterion.",
    ),
    Field("hp_positive", "bool", None, "Helicobacter pylori antibody positive."),
    Field("pg_ratio", "float", None, "Pepsinogen I / II ratio."),
    Field("gastrin17", "float", "pmol/L", "Gastrin-17."),
    Field("psa", "float", "ug/L", "Total prostate-specific antigen."),
)
"""The clinical columns of the population contract, in its order."""

ENCOUNTER_FIELDS = (
    Field("ogtt_2h_mmol", "float", "mmol/L", "Plasma glucose 2 h after a 75 g oral glucose load."),
    Field("random_glucose_mmol", "float", "mmol/L", "Random plasma glucose."),
    Field(
        "diabetes_symptoms",
        "bool",
        None,
        "Typical symptoms of diabetes (polydipsia, polyuria, polyphagia, unexplained weight loss).",
    ),
    Field("family_history_prostate_cancer", "bool", None, "Father or brother with prostate cancer."),
    Field(
        "heart_history",
        "enum",
        None,
        "HEART history: slightly, moderately or highly suspicious.",
        ("slightly", "moderately", "highly"),
    ),
    Field(
        "heart_ecg",
        "enum",
        None,
        "HEART ECG: normal, non-specific repolarisation (LBBB, LVH, digoxin), significant ST deviation.",
        ("normal", "nonspecific", "st_deviation"),
    ),
    Field(
        "heart_risk_factors",
        "int",
        None,
        "HEART risk factors present (hypertension, "
        "hypercholesterolaemia, diabetes, BMI > 30, smoking, family history).",
    ),
    Field("atherosclerotic_disease", "bool", None, "Known atherosclerotic disease."),
    Field("troponin_ratio", "float", None, "Troponin divided by its upper normal limit."),
    Field(
        "nodule_type",
        "enum",
        None,
        "Lung nodule on LDCT: none, solid, part_solid, non_solid.",
        ("none", "solid", "part_solid", "non_solid"),
    ),
    Field(
        "nodule_status",
        "enum",
        None,
        "Nodule at baseline screen, new, or growing (mean diameter up > 1.5 mm within 12 months).",
        ("baseline", "new", "growing"),
    ),
    Field("nodule_long_mm", "float", "mm", "Nodule long-axis diameter."),
    Field("nodule_short_mm", "float", "mm", "Nodule short-axis diameter (perpendicular)."),
    Field("solid_component_mm", "float", "mm", "Mean diameter of the solid component (part-solid)."),
    Field("suspicious_features", "bool", None, "Additional features that increase suspicion of malignancy."),
)
"""Inputs measured or asked at a visit (HEART, Lung-RADS, OGTT, ...), not in the population contract."""

FIELDS: dict[str, Field] = {f.name: f for f in (*POPULATION_FIELDS, *ENCOUNTER_FIELDS)}


@cache
def limits() -> dict[str, Limits]:
    """Data-quality limits per numeric field (data/screening_limits.yaml)."""
    doc = load_data("screening_limits.yaml")
    out: dict[str, Limits] = {}
    for name, spec in doc["limits"].items():
        if "loinc" in spec:
            rng = rules().ranges[str(spec["loinc"])]
            out[name] = Limits(rng.min, rng.max, rng.source, rng.confirmed)
        else:
            out[name] = Limits(
                float(spec["min"]), float(spec["max"]), str(doc["source"]), bool(doc["confirmed"])
            )
    return out


def invalid(name: str) -> pl.Expr:
    """True where the field holds a value it cannot have: outside its limits, or an enum value that
    is not allowed. Null (missing) is not invalid."""
    field = FIELDS[name]
    col = pl.col(name)
    if field.kind == "enum":
        return col == INVALID
    lim = limits().get(name)
    if lim is None:
        return pl.lit(False)
    return ~col.is_between(lim.min, lim.max)
