"""The baseline of the screening benchmark: the population models written the straightforward way,
one person at a time in plain Python, doing the same job as `medloop screen` — read a Parquet file,
check each input, compute every model's score, category, flags and reasons, write a Parquet file.

It reads the same data files as the engine (coefficients, points, bands, limits) and follows the
same rules (docs/screening.md): an implausible or not-allowed input → "error"; a not-applicable
rule → "not_applicable"; a category the inputs leave open → "insufficient_data" with the missing
inputs that matter; otherwise score, category and flags. Unknown values (None) follow three-valued
logic, as SQL and Polars do: "yes or unknown" is yes, "no or unknown" is unknown. The benchmark
checks that its output equals the engine's, column by column, so it is also an independent second
implementation of the models."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medloop.clinical import blood_pressure, cdrs, china_par, copd_sq, gastric, glycaemia, lung_screening, psa
from medloop.clinical.inputs import FIELDS, limits

Row = Mapping[str, Any]
Result = tuple[float | None, str, str | None, str | None]  # score, category, flags, reasons
Computed = tuple[float | None, str | None, list[str]]  # score, category (None: open), flags


# --- three-valued logic and bands -----------------------------------------------------------------


def any_of(*values: bool | None) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def all_of(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def negate(value: bool | None) -> bool | None:
    return None if value is None else not value


def at_least(x: float | None, bound: float) -> bool | None:
    return None if x is None else x >= bound


def above(x: float | None, bound: float) -> bool | None:
    return None if x is None else x > bound


def is_value(x: Any, value: Any) -> bool | None:
    return None if x is None else x == value


def band(x: float | None, bands: Sequence[Mapping[str, Any]], key: str) -> Any:
    """The `key` of the highest band `x` reaches (bands from low to high; `min`: ≥, `above`: >,
    neither: everything below the next band); None when x is None or below every band."""
    if x is None:
        return None
    for b in reversed(bands):
        if "min" in b:
            if x >= b["min"]:
                return b[key]
        elif "above" in b:
            if x > b["above"]:
                return b[key]
        else:
            return b[key]
    return None


def total(*points: float | None) -> float | None:
    return None if any(p is None for p in points) else float(sum(points))  # type: ignore[arg-type]


def yes_points(value: bool | None, points: float) -> float | None:
    return None if value is None else points * value


def bmi(r: Row) -> float | None:
    if r["weight_kg"] is None or r["height_cm"] is None:
        return None
    metres = r["height_cm"] / 100.0
    return round(r["weight_kg"] / (metres * metres), 6)  # as the engine: see medloop.clinical.scoring.bmi


# --- what every model shares -----------------------------------------------------------------


@dataclass(frozen=True)
class RowModel:
    name: str
    inputs: tuple[str, ...]  # in the engine's order (required, then optional)
    compute: Callable[[Row], Computed]
    not_applicable: Callable[[Row], list[str]] = lambda r: []
    needed: Callable[[Row], Mapping[str, bool | None]] = lambda r: {}  # input → does its absence matter


def within(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda value: bool(lo <= value <= hi)  # NaN is not


def checks(names: Sequence[str]) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """Per input that has a check: whether a present value is possible (an allowed enum value, a
    number inside its data-quality limits), and the reason code when it is not."""
    out = {}
    for name in names:
        spec = FIELDS[name]
        if spec.kind == "enum":
            out[name] = (spec.values.__contains__, f"invalid:{name}")
        elif name in limits():
            out[name] = (within(limits()[name].min, limits()[name].max), f"implausible:{name}")
    return out


def problems(r: Row, checks: Mapping[str, tuple[Callable[[Any], bool], str]]) -> dict[str, str]:
    """The reason code of each input of the row whose value is not possible."""
    return {
        name: code
        for name, (possible, code) in checks.items()
        if r[name] is not None and not possible(r[name])
    }


def screen(model: RowModel, r: Row, bad: Mapping[str, str]) -> Result:
    if bad and (codes := [bad[f] for f in model.inputs if f in bad]):
        return None, "error", None, ";".join(codes)
    rules = model.not_applicable(r)
    if rules:
        return None, "not_applicable", None, ";".join(rules)
    score, category, flags = model.compute(r)
    if category is None:
        needed = model.needed(r)
        missing = [f"missing:{f}" for f in model.inputs if r[f] is None and needed.get(f) is not False]
        return None, "insufficient_data", None, ";".join(missing) or "undetermined"
    return score, category, ";".join(flags) or None, None


def outside(name: str, value: float | None, valid: Mapping[str, float]) -> list[str]:
    """The engine's not-applicable code when `value` lies outside a valid range (bounds inclusive)."""
    lo, hi = valid.get("min"), valid.get("max")
    if value is None:
        return []
    if lo is not None and hi is not None:
        return [f"{name}_outside_{lo:g}_{hi:g}"] if not lo <= value <= hi else []
    if lo is not None:
        return [f"{name}_below_{lo:g}"] if value < lo else []
    assert hi is not None
    return [f"{name}_above_{hi:g}"] if value > hi else []


# --- the models ------------------------------------------------------------------------------


def china_par_compute(r: Row) -> Computed:
    sex = r["sex"]
    if sex is None:
        return None, None, []
    beta = china_par.DOC["coefficients"][sex]
    per_mgdl = china_par.DOC["mmol_per_mgdl"]
    used = ["age", "sbp", "bp_treated", "tc_mmol", "hdl_mmol", "waist_cm", "smoking", "diabetes", "north"]
    if sex == "M":
        used += ["urban", "family_history_ascvd"]
    if any(r[f] is None for f in used):
        return None, None, []
    ln_age, ln_sbp = math.log(float(r["age"])), math.log(r["sbp"])
    treated = 1.0 if r["bp_treated"] else 0.0
    smoker = 1.0 if r["smoking"] == "current" else 0.0
    family = 1.0 if r["family_history_ascvd"] else 0.0
    terms = {
        "ln_age": ln_age,
        "ln_sbp_treated": ln_sbp * treated,
        "ln_sbp_untreated": ln_sbp * (1.0 - treated),
        "ln_tc": math.log(r["tc_mmol"] / per_mgdl),
        "ln_hdl": math.log(r["hdl_mmol"] / per_mgdl),
        "ln_waist": math.log(r["waist_cm"]),
        "smoker": smoker,
        "diabetes": 1.0 if r["diabetes"] else 0.0,
        "north": 1.0 if r["north"] else 0.0,
        "urban": 1.0 if r["urban"] else 0.0,
        "family_history": family,
        "ln_age_x_ln_sbp_treated": ln_age * ln_sbp * treated,
        "ln_age_x_ln_sbp_untreated": ln_age * ln_sbp * (1.0 - treated),
        "ln_age_x_smoker": ln_age * smoker,
        "ln_age_x_family_history": ln_age * family,
    }
    z = beta["intercept"]
    for term, coefficient in beta.items():
        if term != "intercept":
            z = z + coefficient * terms[term]
    risk = 100.0 * (1.0 - math.exp(-math.exp(z)))
    return risk, band(risk, china_par.BANDS, "category"), []


def cdrs_compute(r: Row) -> Computed:
    p, sex = cdrs.POINTS, r["sex"]
    score = total(
        band(r["age"], p["age"], "points"),
        band(bmi(r), p["bmi"], "points"),
        None if sex is None else band(r["waist_cm"], p["waist"][sex], "points"),
        band(r["sbp"], p["sbp"], "points"),
        yes_points(r["family_history_diabetes"], p["family_history_diabetes"]),
        None if sex is None else p["male"] * (sex == "M"),
    )
    return score, band(score, cdrs.BANDS, "category"), []


def copd_sq_compute(r: Row) -> Computed:
    p = copd_sq.POINTS
    pack_years = 0.0 if r["smoking"] == "never" and r["pack_years"] is None else r["pack_years"]
    score = total(
        band(r["age"], p["age"], "points"),
        band(pack_years, p["pack_years"], "points"),
        band(bmi(r), p["bmi"], "points"),
        yes_points(r["chronic_cough"], p["chronic_cough"]),
        None if r["dyspnea"] is None else p["dyspnea"].get(r["dyspnea"]),
        yes_points(r["biomass_exposure"], p["biomass_exposure"]),
        yes_points(r["family_history_respiratory"], p["family_history_respiratory"]),
    )
    return score, band(score, copd_sq.BANDS, "category"), []


def lung_screening_compute(r: Row) -> Computed:
    c = lung_screening.CHINA_DOC["criteria"]
    smoking, quit_years = r["smoking"], r["years_since_quit"]
    current, former = is_value(smoking, "current"), is_value(smoking, "former")
    recent = negate(at_least(quit_years, c["heavy_smoking"]["quit_years_below"]))
    routes = {
        "heavy_smoking": all_of(
            at_least(r["pack_years"], c["heavy_smoking"]["pack_years_min"]),
            any_of(current, all_of(former, recent)),
        ),
        "passive_smoking": above(r["passive_smoking_years"], c["passive_smoking"]["years_above"]),
        "copd": r["copd"],
        "occupational_exposure": r["occupational_exposure"],
        "family_history_lung_cancer": r["family_history_lung_cancer"],
    }
    age = r["age"]
    in_age = None if age is None else c["age"]["min"] <= age <= c["age"]["max"]
    eligible = all_of(in_age, any_of(*routes.values()))
    flags = [code for code, holds in routes.items() if holds]
    if in_age is False:
        flags.append(f"age_outside_{c['age']['min']:g}_{c['age']['max']:g}")
    category = None if eligible is None else "eligible" if eligible else "not_eligible"
    return None, category, flags


def blood_pressure_compute(r: Row) -> Computed:
    g = blood_pressure.GRADES
    sbp, dbp = r["sbp"], r["dbp"]
    if sbp is None or dbp is None:
        return None, None, []
    level = max(band(sbp, g["sbp"], "level"), band(dbp, g["dbp"], "level"))
    isolated, critical = blood_pressure.DOC["isolated_systolic"], blood_pressure.DOC["critical"]
    flags = []
    if sbp >= isolated["sbp_min"] and dbp < isolated["dbp_below"]:
        flags.append("isolated_systolic")
    if sbp >= critical["sbp_min"] or dbp >= critical["dbp_min"]:
        flags.append("critical")
    return None, g["levels"][level], flags


def glycaemia_compute(r: Row) -> Computed:
    d, ifg_rule, igt_rule = glycaemia.DOC["diabetes"], glycaemia.DOC["ifg"], glycaemia.DOC["igt"]
    fpg, ogtt = r["fpg_mmol"], r["ogtt_2h_mmol"]
    symptoms, random = r["diabetes_symptoms"], r["random_glucose_mmol"]
    criteria = {
        "fpg_diabetic": at_least(fpg, d["fpg_min"]),
        "ogtt_diabetic": at_least(ogtt, d["ogtt_2h_min"]),
        "hba1c_diabetic": at_least(r["hba1c_pct"], d["hba1c_min"]),
        "random_glucose_with_symptoms": all_of(symptoms, at_least(random, d["random_with_symptoms_min"])),
    }
    diabetes = any_of(*criteria.values()) is True
    category: str | None
    if diabetes:
        category = "diabetes"
    elif fpg is None:
        category = None
    elif all_of(
        fpg >= ifg_rule["fpg_min"], fpg < d["fpg_min"], negate(at_least(ogtt, ifg_rule["ogtt_2h_below"]))
    ) in (True, None):
        category = "ifg"
    elif all_of(at_least(ogtt, igt_rule["ogtt_2h_min"]), negate(at_least(ogtt, d["ogtt_2h_min"]))):
        category = "igt"
    else:
        category = "normal"
    flags = [code for code, holds in criteria.items() if holds]
    if diabetes and not symptoms:
        flags.append("confirm_on_another_day")
    if category == "ifg" and ogtt is None:
        flags.append("ogtt_not_done")
    return None, category, flags


def gastric_compute(r: Row) -> Computed:
    p, sex, ratio = gastric.POINTS, r["sex"], r["pg_ratio"]
    score = total(
        band(r["age"], p["age"], "points"),
        None if sex is None else p["male"] * (sex == "M"),
        yes_points(r["hp_positive"], p["hp_positive"]),
        None if ratio is None else p["pg_ratio_below"]["points"] * (ratio < p["pg_ratio_below"]["value"]),
        band(r["gastrin17"], p["gastrin17"], "points"),
    )
    return score, band(score, gastric.BANDS, "category"), []


def psa_starts(r: Row) -> bool | None:
    s, age = psa.START, r["age"]
    return any_of(
        above(age, s["age_above"]),
        all_of(above(age, s["age_above_with_family_history"]), r["family_history_prostate_cancer"]),
        all_of(above(age, s["age_above_with_psa"]), above(r["psa"], s["psa_above"])),
    )


def psa_compute(r: Row) -> Computed:
    if not (r["sex"] == "M" and psa_starts(r)):
        return None, None, []
    category = band(r["psa"], psa.TRIAGE["bands"], "category")
    flags = sorted(code for c, codes in psa.TRIAGE["flags"].items() if c == category for code in codes)
    return None, category, flags


def psa_not_applicable(r: Row) -> list[str]:
    rules = ["not_male"] if r["sex"] == "F" else []
    return rules + (["below_start_age"] if all_of(is_value(r["sex"], "M"), negate(psa_starts(r))) else [])


MODELS: dict[str, RowModel] = {
    m.name: m
    for m in (
        RowModel(
            "china_par",
            china_par.MODEL.inputs,
            china_par_compute,
            lambda r: outside("age", r["age"], china_par.MODEL.valid["age"]),
            lambda r: dict.fromkeys(
                ("urban", "family_history_ascvd"), None if r["sex"] is None else r["sex"] == "M"
            ),
        ),
        RowModel(
            "cdrs",
            cdrs.MODEL.inputs,
            cdrs_compute,
            lambda r: outside("age", r["age"], cdrs.MODEL.valid["age"]),
        ),
        RowModel(
            "copd_sq",
            copd_sq.MODEL.inputs,
            copd_sq_compute,
            lambda r: outside("age", r["age"], copd_sq.MODEL.valid["age"]),
            lambda r: {
                "pack_years": negate(is_value(r["smoking"], "never")),
                "smoking": r["pack_years"] is None,
            },
        ),
        RowModel(
            "lung_screening",
            lung_screening.CHINA.inputs,
            lung_screening_compute,
            needed=lambda r: {
                "pack_years": negate(is_value(r["smoking"], "never")),
                "years_since_quit": is_value(r["smoking"], "former"),
            },
        ),
        RowModel("blood_pressure", blood_pressure.MODEL.inputs, blood_pressure_compute),
        RowModel(
            "glycaemia",
            glycaemia.MODEL.inputs,
            glycaemia_compute,
            needed=lambda r: dict.fromkeys(glycaemia.OPTIONAL, False),
        ),
        RowModel(
            "gastric",
            gastric.MODEL.inputs,
            gastric_compute,
            lambda r: outside("age", r["age"], gastric.MODEL.valid["age"]),
        ),
        RowModel(
            "psa",
            psa.MODEL.inputs,
            psa_compute,
            psa_not_applicable,
            lambda r: {
                "family_history_prostate_cancer": None
                if r["age"] is None
                else r["age"] <= psa.START["age_above"]
            },
        ),
    )
}


# --- the job ---------------------------------------------------------------------------------


def output_schema(key: str) -> pa.Schema:
    fields = [pa.field(key, pa.string())]
    for name in MODELS:
        fields += [
            pa.field(f"{name}_score", pa.float64()),
            pa.field(f"{name}_category", pa.string()),
            pa.field(f"{name}_flags", pa.string()),
            pa.field(f"{name}_reasons", pa.string()),
        ]
    return pa.schema(fields)


def screen_file(source: Path, out: Path, key: str = "person_id") -> tuple[float, float]:
    """Screen `source` into `out`, one row at a time: (seconds end to end, seconds in the models)."""
    inputs = list(dict.fromkeys(f for m in MODELS.values() for f in m.inputs))
    available = set(pq.ParquetFile(source).schema_arrow.names)
    columns = [key, *(f for f in inputs if f in available)]
    schema = output_schema(key)
    checked = checks(inputs)
    started, in_models = time.perf_counter(), 0.0
    with pq.ParquetWriter(out, schema, compression="lz4") as writer:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=65_536, columns=columns):
            rows, records = batch.to_pylist(), []
            before = time.perf_counter()
            for row in rows:
                for f in inputs:  # a column the table lacks is unknown for everyone
                    row.setdefault(f, None)
                record: dict[str, Any] = {key: row[key]}
                bad = problems(row, checked)
                for name, model in MODELS.items():
                    score, category, flags, reasons = screen(model, row, bad)
                    record[f"{name}_score"] = score
                    record[f"{name}_category"] = category
                    record[f"{name}_flags"] = flags
                    record[f"{name}_reasons"] = reasons
                records.append(record)
            in_models += time.perf_counter() - before
            writer.write_table(pa.Table.from_pylist(records, schema))
    return time.perf_counter() - started, in_models
