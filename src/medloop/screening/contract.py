"""The population input contract: the columns a screening input table may carry, their types and
units. The region simulator writes exactly these columns; `medloop screen` reads them. A missing
column disables only the models that need it; a missing value gives that row "insufficient data"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "int", "float", "bool", "enum"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    unit: str | None
    description: str
    values: tuple[str, ...] = ()  # allowed values for enums


COLUMNS: tuple[Column, ...] = (
    Column("person_id", "str", None, "Key of the person; copied to every output row."),
    Column("sex", "enum", None, "Sex at birth.", ("M", "F")),
    Column("age", "int", "a", "Age in completed years."),
    Column("sbp", "float", "mm[Hg]", "Systolic blood pressure (office)."),
    Column("dbp", "float", "mm[Hg]", "Diastolic blood pressure (office)."),
    Column("bp_treated", "bool", None, "Currently taking antihypertensive medication."),
    Column("tc_mmol", "float", "mmol/L", "Total cholesterol."),
    Column("hdl_mmol", "float", "mmol/L", "HDL cholesterol."),
    Column("waist_cm", "float", "cm", "Waist circumference."),
    Column("height_cm", "float", "cm", "Body height."),
    Column("weight_kg", "float", "kg", "Body weight."),
    Column("smoking", "enum", None, "Smoking status.", ("never", "former", "current")),
    Column("pack_years", "float", "pack-years", "Packs (20 cigarettes) per day × years smoked."),
    Column("years_since_quit", "float", "a", "Years since quitting (former smokers)."),
    Column("diabetes", "bool", None, "Diagnosed diabetes."),
    Column("fpg_mmol", "float", "mmol/L", "Fasting plasma glucose."),
    Column("hba1c_pct", "float", "%", "Glycated haemoglobin (NGSP %)."),
    Column("family_history_ascvd", "bool", None, "Parent or sibling with ASCVD."),
    Column("family_history_diabetes", "bool", None, "First-degree relative with diabetes."),
    Column("north", "bool", None, "Lives in northern China (north of the Yangtze)."),
    Column("urban", "bool", None, "Lives in an urban area."),
    Column("chronic_cough", "bool", None, "Cough when not having a cold."),
    Column("dyspnea", "enum", None, "Shortness of breath.", ("none", "exertion", "flat")),
    Column("biomass_exposure", "bool", None, "Biomass or coal smoke for cooking/heating."),
    Column("family_history_respiratory", "bool", None, "Family history of respiratory disease."),
    Column("copd", "bool", None, "Diagnosed COPD."),
    Column("occupational_exposure", "bool", None, "≥ 1 year of asbestos, radon, beryllium, chromium, cadmium, "
           "silicon, coal smoke or soot exposure."),
    Column("family_history_lung_cancer", "bool", None, "First-degree relative with lung cancer."),
    Column("passive_smoking_years", "float", "a", "Years of passive smoking (household/workplace)."),
    Column("hp_positive", "bool", None, "Helicobacter pylori antibody positive."),
    Column("pg_ratio", "float", None, "Pepsinogen I / II ratio."),
    Column("gastrin17", "float", "pmol/L", "Gastrin-17."),
    Column("psa", "float", "ug/L", "Total prostate-specific antigen."),
)

BY_NAME = {c.name: c for c in COLUMNS}
NAMES = tuple(c.name for c in COLUMNS)
