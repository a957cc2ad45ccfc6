"""Synthetic residents: adults with the age/sex structure of the 2020 census and correlated risk
factors and measurements at the prevalences of Chinese national surveys (`data/population.yaml`).

`generate(n, seed, chunk_size)` yields Polars frames of `chunk_size` rows. It is vectorised (NumPy
and Polars, no per-person Python) and deterministic: rows are made in fixed blocks of `BLOCK_ROWS`,
each with its own random stream keyed by (seed, reference date, block number), so the same seed gives
the same people whatever the chunk size, and the first k people are the same for every n >= k.

The model is a Gaussian copula. Each person gets a few standard-normal latent variables (BMI,
hypertension and diabetes liabilities, smoking, biomass, COPD liability, ...) that are correlated by
mixing. A binary condition is "liability above a threshold", where the threshold of each age/sex cell
is Φ⁻¹(1 − p) with p calibrated so that the census-weighted prevalence equals the cited figure; the
measurements are then drawn consistently with the condition (a hypertensive person's measured BP is
≥ 140/90 unless treated and controlled, a person with undiagnosed diabetes has FPG ≥ 7.0 or HbA1c ≥ 6.5,
and so on), so a screening model sees the same prevalence in the measurements as in the truth columns
`has_hypertension`, `has_diabetes`, `has_copd`. Contract columns `diabetes` and `copd` mean
*diagnosed*, as the screening contract says."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from medloop.people.identifiers import _CHECK, _WEIGHTS  # the one definition of the check character
from medloop.screening.contract import COLUMNS, NAMES, Kind
from medloop.sim import DEFAULT_AS_OF, DEFAULT_CHUNK_ROWS
from medloop.sim.names import draw_names
from medloop.sim.region import (
    HomeTables,
    Region,
    build_region,
    default_facility_count,
    home_tables,
    load_yaml,
)

BLOCK_ROWS = 50_000
MAX_AGE = 100

_KIND_DTYPE: dict[Kind, pl.DataType] = {
    "str": pl.String(),
    "enum": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
}
CONTRACT_SCHEMA: dict[str, pl.DataType] = {c.name: _KIND_DTYPE[c.kind] for c in COLUMNS}
# Extra columns of the Parquet population table (no direct identifiers: no names, IDs or phones).
EXTRA_COLUMNS: dict[str, pl.DataType] = {
    "home_facility_code": pl.String(),
    "district_code": pl.String(),
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
    "bmi": pl.Float64(),
    "has_hypertension": pl.Boolean(),
    "has_diabetes": pl.Boolean(),
    "has_copd": pl.Boolean(),
}
PARQUET_COLUMNS: tuple[str, ...] = (*NAMES, *EXTRA_COLUMNS)
# Identity columns, for the database only.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "family_name",
    "given_name",
    "name",
    "birth_date",
    "national_id",
    "phone",
    "consent_sms",
    "consent_research",
)

_UNIFORMS = (
    "cell", "birth", "district", "urban", "home", "bp_treat", "bp_control", "dm_aware", "dm_treat",
    "dm_control", "a1c_control", "copd_dx", "copd_symptomatic", "copd_mix", "dyspnea_flat", "cough",
    "dyspnea", "quit", "occupational", "fh_lung", "passive", "passive_years", "name0", "name1", "name2",
    "name3", "phone", "consent_sms", "consent_research",
)  # fmt: skip
_NORMALS = (
    "bmi", "htn", "dm", "height", "waist", "dbp", "bp_control", "fpg", "a1c", "tc", "hdl", "smoke",
    "cpd", "start", "biomass", "copd", "fh_ascvd", "fh_dm", "fh_resp", "hp", "pg", "g17", "psa",
    "scatter_north", "scatter_east",
)  # fmt: skip
_PHONE_PREFIXES = np.array(
    [130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 157, 158, 159, 176, 177, 180, 181,
     182, 183, 185, 186, 187, 188, 189, 199],
    dtype=np.int64,
)  # fmt: skip
_STD = NormalDist()


# --- the calibrated model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """Per age/sex cell tables (cell = sex x age; men first) and scalar parameters."""

    min_age: int
    cell_age: np.ndarray
    cell_male: np.ndarray
    cell_weight: np.ndarray  # census population share of the cell among adults
    cell_cdf: np.ndarray
    threshold: dict[str, np.ndarray]  # latent thresholds per cell, by condition
    p: dict[str, np.ndarray]  # calibrated probabilities per cell
    height_mean: np.ndarray
    height_sd: np.ndarray
    log_bmi_mean: np.ndarray
    log_bmi_sd: float
    dbp_mean: np.ndarray
    tc_mean: np.ndarray
    psa_median: np.ndarray
    params: dict[str, Any]  # the YAML, for scalar parameters


def _v(node: Any) -> float:
    """A figure from the YAML: a bare number or a mapping with `value`."""
    return float(node["value"] if isinstance(node, dict) else node)


def _cells_from_bands(bands: Sequence[dict[str, Any]], ages: np.ndarray, male: np.ndarray) -> np.ndarray:
    out = np.full(len(ages), np.nan)
    for band in bands:
        lo, hi = band["ages"]
        sel = (ages >= lo) & (ages <= hi)
        if "value" in band:
            out[sel] = float(band["value"])
        else:
            out[sel & male] = float(band["male"])
            out[sel & ~male] = float(band["female"])
    if np.isnan(out).any():
        missing = sorted(set(ages[np.isnan(out)].tolist()))
        raise ValueError(f"population.yaml: bands do not cover ages {missing}")
    return out


def _bisect(f: Callable[[float], float], lo: float, hi: float, iterations: int = 80) -> float:
    """Root of an increasing function f on [lo, hi]."""
    if f(lo) > 0 or f(hi) < 0:
        raise ValueError("calibration target is out of reach")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


_erf = np.vectorize(math.erf)


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + _erf(np.asarray(x) / math.sqrt(2)))


def _target_mask(target: dict[str, Any], ages: np.ndarray, male: np.ndarray) -> np.ndarray:
    lo, hi = target["ages"]
    mask = (ages >= lo) & (ages <= hi)
    if target.get("sex") == "M":
        mask &= male
    elif target.get("sex") == "F":
        mask &= ~male
    return mask


def _calibrated(spec: dict[str, Any], ages: np.ndarray, male: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Shape probabilities shifted on the odds scale, band by band, to the targets."""
    shape = _cells_from_bands(spec["shape"]["bands"], ages, male)
    out = np.full(len(ages), np.nan)
    for target in spec["targets"]:
        mask = _target_mask(target, ages, male)
        base, weights, value = _logit(shape[mask]), w[mask] / w[mask].sum(), float(target["value"])

        def gap(
            k: float, base: np.ndarray = base, weights: np.ndarray = weights, value: float = value
        ) -> float:
            return float(weights @ _expit(base + k)) - value

        out[mask] = _expit(base + _bisect(gap, -20, 20))
    if np.isnan(out).any():
        raise ValueError("population.yaml: condition targets do not cover every age/sex cell")
    return out


def _calibrated_quit_ratio(
    spec: dict[str, Any], current: np.ndarray, ages: np.ndarray, male: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """Quit ratio per cell such that former / ever smokers (a ratio of weighted sums) matches."""
    shape = _cells_from_bands(spec["shape"]["bands"], ages, male)
    out = np.full(len(ages), np.nan)
    for target in spec["targets"]:
        mask = _target_mask(target, ages, male)
        base, cur, ww, value = _logit(shape[mask]), current[mask], w[mask], float(target["value"])

        def gap(
            k: float,
            base: np.ndarray = base,
            cur: np.ndarray = cur,
            ww: np.ndarray = ww,
            value: float = value,
        ) -> float:
            r = _expit(base + k)
            former = cur * r / (1 - r)
            return float(ww @ former / (ww @ (cur + former))) - value

        out[mask] = _expit(base + _bisect(gap, -20, 20))
    return out


@cache
def model() -> Model:
    """The population model: YAML figures turned into calibrated per-cell tables (computed once)."""
    spec = load_yaml("population.yaml")
    min_age = int(spec["adult_min_age"]["value"])
    ages_1 = np.arange(min_age, MAX_AGE + 1)
    ages = np.concatenate([ages_1, ages_1])
    male = np.repeat([True, False], len(ages_1))

    counts = np.zeros(len(ages))
    for first, last, millions, ratio in spec["age_sex"]["groups"]:
        share_m = float(ratio) / (100 + float(ratio))
        per_age = float(millions) / (int(last) - int(first) + 1)
        sel = (ages >= max(int(first), min_age)) & (ages <= int(last))
        counts[sel & male] = per_age * share_m
        counts[sel & ~male] = per_age * (1 - share_m)
    if (counts <= 0).any():
        raise ValueError("population.yaml: age_sex groups do not cover every adult age")
    w = counts / counts.sum()
    cdf = np.cumsum(w)
    cdf[-1] = 1.0

    conds = spec["conditions"]
    p: dict[str, np.ndarray] = {
        name: _calibrated(conds[name], ages, male, w)
        for name in ("hypertension", "diabetes", "copd", "current_smoking", "h_pylori")
    }
    quit_ratio = _calibrated_quit_ratio(conds["quit_ratio"], p["current_smoking"], ages, male, w)
    former = p["current_smoking"] * quit_ratio / (1 - quit_ratio)
    p["former_smoking"] = np.minimum(former, 1 - p["current_smoking"])

    def threshold(prob: np.ndarray) -> np.ndarray:
        return np.array([_STD.inv_cdf(float(1 - x)) for x in prob])

    thresholds = {name: threshold(prob) for name, prob in p.items() if name != "former_smoking"}
    thresholds["ever_smoking"] = threshold(p["current_smoking"] + p["former_smoking"])

    h = spec["height_cm"]
    height_mean = np.where(male, h["mean_18_44"]["male"], h["mean_18_44"]["female"]) - _v(
        h["decline_per_year_after_44"]
    ) * np.maximum(ages - 44, 0)
    height_sd = np.where(male, h["sd"]["male"], h["sd"]["female"]).astype(np.float64)

    b = spec["bmi"]
    log_factor = np.log(_cells_from_bands(b["age_factor"]["bands"], ages, male)) + np.log(
        np.where(male, b["sex_factor"]["male"], b["sex_factor"]["female"])
    )
    share_24 = _v(b["overweight_24_to_28"]) + _v(b["obese_28_plus"])

    def location_for(sd: float) -> float:
        return _bisect(lambda mu: float(w @ _phi((mu + log_factor - math.log(24)) / sd)) - share_24, 2.0, 4.5)

    def obese_gap(sd: float) -> float:
        mu = location_for(sd)
        return float(w @ _phi((mu + log_factor - math.log(28)) / sd)) - _v(b["obese_28_plus"])

    log_bmi_sd = _bisect(obese_gap, 0.03, 0.6, iterations=50)
    log_bmi_mean = location_for(log_bmi_sd) + log_factor

    tc = spec["total_cholesterol"]
    tc_shape = _cells_from_bands(tc["shape"]["bands"], ages, male)
    tc_sd = _v(tc["sd"])
    tc_base = _bisect(
        lambda m: float(w @ _phi((m + tc_shape - 6.2) / tc_sd)) - _v(tc["high_6_2_plus"]), 2.0, 8.0
    )

    return Model(
        min_age=min_age,
        cell_age=ages.astype(np.int64),
        cell_male=male,
        cell_weight=w,
        cell_cdf=cdf,
        threshold=thresholds,
        p=p,
        height_mean=height_mean,
        height_sd=height_sd,
        log_bmi_mean=log_bmi_mean,
        log_bmi_sd=log_bmi_sd,
        dbp_mean=_cells_from_bands(spec["blood_pressure"]["dbp_mean"]["bands"], ages, male),
        tc_mean=tc_base + tc_shape,
        psa_median=_cells_from_bands(spec["psa"]["bands"], ages, male),
        params=spec,
    )


# --- dates and identifiers -----------------------------------------------------------------------


def _years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


_EPOCH = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class BirthTable:
    """For each age a (index a - min_age): the first birth date (ordinal) giving age a on `as_of`,
    and how many such dates there are."""

    first: np.ndarray
    span: np.ndarray
    min_ordinal: int
    max_ordinal: int


def birth_table(as_of: date, min_age: int) -> BirthTable:
    first, span = [], []
    for a in range(min_age, MAX_AGE + 1):
        latest = _years_before(as_of, a).toordinal()
        earliest = _years_before(as_of, a + 1).toordinal() + 1
        first.append(earliest)
        span.append(latest - earliest + 1)
    f, s = np.array(first, dtype=np.int64), np.array(span, dtype=np.int64)
    return BirthTable(f, s, int(f.min()), int((f + s - 1).max()))


class NationalIdSequencer:
    """Hands out the 3-digit sequence codes of national IDs: distinct within (district, birth date,
    sex), odd for men and even for women (GB 11643-1999), in row order across chunks."""

    def __init__(self, n_districts: int, births: BirthTable) -> None:
        self._span = births.max_ordinal - births.min_ordinal + 1
        self._min = births.min_ordinal
        self._used = np.zeros(n_districts * 2 * self._span, dtype=np.int64)

    def take(self, district: np.ndarray, male: np.ndarray, birth_ordinal: np.ndarray) -> np.ndarray:
        keys = (district * 2 + (~male).astype(np.int64)) * self._span + (birth_ordinal - self._min)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        n = len(keys)
        starts = np.ones(n, dtype=bool)
        starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
        run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - run_start
        k = self._used[keys] + rank
        self._used += np.bincount(keys, minlength=len(self._used))
        seq = np.where(male, 2 * k + 1, 2 * k + 2)
        if (seq > 999).any():
            raise ValueError(
                "more than 499 people share a district, birth date and sex: national IDs run out"
            )
        return seq


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DASHES = (8, 13, 18, 23)
_CHECK_ASCII = np.frombuffer(_CHECK.encode(), dtype=np.uint8)
_ID_WEIGHTS = np.array(_WEIGHTS, dtype=np.int64)


def ascii_strings(chars: np.ndarray) -> pl.Series:
    """An (n, k) uint8 array of ASCII codes as a String series of n strings of length k (zero-copy
    through Arrow)."""
    n, k = chars.shape
    data = pa.py_buffer(np.ascontiguousarray(chars, dtype=np.uint8).tobytes())
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * k).tobytes())
    series = pl.from_arrow(pa.StringArray.from_buffers(n, offsets, data))
    assert isinstance(series, pl.Series)
    return series


def person_ids(seed: int, as_of: date, first: int, n: int) -> pl.Series:
    """Deterministic, ordered UUIDs (version 7 layout) for people first .. first + n - 1: the
    reference date as the 48-bit millisecond timestamp, 26 bits derived from the seed, then the
    person's 48-bit index. Keys that grow with the row number keep database index inserts sequential
    (random keys cost a random B-tree page per insert), and the same person always gets the same id."""
    salt = int(np.random.SeedSequence([seed, as_of.toordinal(), 7]).generate_state(1, dtype=np.uint64)[0])
    millis = (as_of.toordinal() - _EPOCH) * 86_400_000
    prefix = bytearray(millis.to_bytes(6, "big"))
    prefix += bytes([0x70 | (salt >> 8) & 0x0F, salt & 0xFF, 0x80 | (salt >> 16) & 0x3F, (salt >> 22) & 0xFF])
    raw = np.empty((n, 16), dtype=np.uint8)
    raw[:, :10] = np.frombuffer(bytes(prefix), dtype=np.uint8)
    index = np.arange(first, first + n, dtype=np.uint64)
    for k in range(6):
        raw[:, 15 - k] = (index >> np.uint64(8 * k)) & np.uint64(0xFF)
    return uuid_strings(raw)


def uuid_strings(b: np.ndarray) -> pl.Series:
    """UUIDs in canonical 36-character form from an (n, 16) uint8 array of their bytes."""
    hexed = np.empty((len(b), 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[b >> 4]
    hexed[:, 1::2] = _HEX[b & 0x0F]
    dash = np.full((len(b), 1), ord("-"), dtype=np.uint8)
    parts = [
        hexed[:, 0:8],
        dash,
        hexed[:, 8:12],
        dash,
        hexed[:, 12:16],
        dash,
        hexed[:, 16:20],
        dash,
        hexed[:, 20:],
    ]
    return ascii_strings(np.hstack(parts))


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def national_ids(district_code: np.ndarray, birth_ordinal: np.ndarray, seq: np.ndarray) -> pl.Series:
    """18-character national IDs: 6-digit region code, birth date YYYYMMDD, sequence, check char."""
    days = (birth_ordinal - _EPOCH).astype("timedelta64[D]") + np.datetime64("1970-01-01", "D")
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = days.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (days - month_start).astype(np.int64) + 1
    ymd = year * 10_000 + month * 100 + day
    digits = np.hstack([_digits(district_code, 6), _digits(ymd, 8), _digits(seq, 3)])
    check = _CHECK_ASCII[(digits @ _ID_WEIGHTS) % 11]
    return ascii_strings(np.hstack([digits.astype(np.uint8) + ord("0"), check[:, None]]))


# --- one block of people -------------------------------------------------------------------------


def _binary(latent: np.ndarray, p: float) -> np.ndarray:
    """latent (standard normal) above its (1 - p) quantile: True with probability p."""
    return latent > _STD.inv_cdf(1 - p)


def _labels(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    """values[index] as a String series (without building a NumPy array of Python strings)."""
    return pl.Series(values, dtype=pl.String).gather(pl.Series(index, dtype=pl.UInt32))


def _mix(a: np.ndarray, weight: float, noise: np.ndarray) -> np.ndarray:
    """A standard normal correlated `weight` with the standard normal `a`."""
    return weight * a + math.sqrt(1 - weight**2) * noise


@dataclass(frozen=True)
class _Context:
    model: Model
    tables: HomeTables
    births: BirthTable
    district_code_int: np.ndarray
    north: bool


def _block(ctx: _Context, seed: int, as_of: date, block: int) -> dict[str, Any]:
    """Columns (NumPy arrays or Polars series) of the BLOCK_ROWS people of block `block`. A block is
    always drawn whole (and cut afterwards), so a person does not depend on how many are made."""
    n = BLOCK_ROWS
    m, t, prm = ctx.model, ctx.tables, ctx.model.params
    rng = np.random.default_rng(np.random.SeedSequence([seed, as_of.toordinal(), block]))
    u = dict(zip(_UNIFORMS, rng.random((len(_UNIFORMS), n)), strict=True))
    z = dict(zip(_NORMALS, rng.standard_normal((len(_NORMALS), n)), strict=True))
    phone_tail = rng.integers(0, 100_000_000, n, dtype=np.int64)
    corr = prm["correlation"]

    # who and where
    cell = np.minimum(np.searchsorted(m.cell_cdf, u["cell"], side="right"), len(m.cell_cdf) - 1)
    age, male = m.cell_age[cell], m.cell_male[cell]
    age_idx = age - m.min_age
    birth_ord = ctx.births.first[age_idx] + (u["birth"] * ctx.births.span[age_idx]).astype(np.int64)
    district = np.minimum(
        np.searchsorted(t.district_cdf, u["district"], side="right"), len(t.district_cdf) - 1
    )
    urban_draw = u["urban"] < t.urban_share[district]
    group = district * 2 + urban_draw.astype(np.int64)
    facility = t.flat[t.group_offset[group] + (u["home"] * t.group_size[group]).astype(np.int64)]
    urban = t.fac_urban[facility]
    scatter = _scatter_km()
    scatter_km = np.where(urban, scatter["urban"], scatter["rural"])
    lat = t.fac_lat[facility] + z["scatter_north"] * scatter_km / 111.32
    lon = t.fac_lon[facility] + z["scatter_east"] * scatter_km / (
        111.32 * np.cos(np.radians(t.fac_lat[facility]))
    )

    # body size
    height = np.round(m.height_mean[cell] + m.height_sd[cell] * z["height"], 1)
    bmi_raw = np.clip(np.exp(m.log_bmi_mean[cell] + m.log_bmi_sd * z["bmi"]), 14, 60)
    weight = np.round(bmi_raw * (height / 100) ** 2, 1)
    bmi = np.round(weight / (height / 100) ** 2, 1)
    wc = prm["waist_cm"]
    waist = np.where(
        male,
        wc["male"]["intercept"] + wc["male"]["slope"] * bmi_raw,
        wc["female"]["intercept"] + wc["female"]["slope"] * bmi_raw,
    )
    waist = np.round(np.clip(waist + wc["sd"] * z["waist"], 50, 160), 1)

    # blood pressure
    bp = prm["blood_pressure"]
    care = prm["hypertension_care"]
    liab_htn = _mix(z["bmi"], corr["htn_bmi"], z["htn"])
    htn_threshold = m.threshold["hypertension"][cell]
    has_htn = liab_htn > htn_threshold
    sbp_raw = 140 + bp["sbp_sd"] * (liab_htn - htn_threshold)
    dbp_raw = m.dbp_mean[cell] + bp["dbp_sd"] * _mix(liab_htn, bp["dbp_liability_weight"], z["dbp"])
    bp_treated = has_htn & (u["bp_treat"] < _v(care["treated"]))
    controlled = bp_treated & (u["bp_control"] < _v(care["controlled_if_treated"]))
    normal_bp = ~has_htn | controlled
    dbp_raw = np.where(~has_htn & (dbp_raw >= 89.5), 179 - dbp_raw, dbp_raw)  # reflect below 90
    sbp = np.select(
        [controlled, bp_treated],
        [139 - np.abs(z["bp_control"]) * 10, 140 + (sbp_raw - 140) * 0.8],
        default=sbp_raw,
    )
    dbp = np.select([controlled, bp_treated], [dbp_raw - 5, dbp_raw - 3], default=dbp_raw)
    sbp = np.clip(np.round(sbp), 85, 250)
    dbp = np.clip(np.round(dbp), 40, 150)
    sbp = np.where(normal_bp, np.minimum(sbp, 139), np.maximum(sbp, 140))
    dbp = np.where(normal_bp, np.minimum(dbp, 89), dbp)
    dbp = np.minimum(dbp, sbp - 20)  # a pulse pressure of at least 20 mmHg

    # glucose
    gl, dmc = prm["glucose"], prm["diabetes_care"]
    liab_dm = (
        corr["dm_bmi"] * z["bmi"]
        + corr["dm_htn"] * z["htn"]
        + math.sqrt(1 - corr["dm_bmi"] ** 2 - corr["dm_htn"] ** 2) * z["dm"]
    )
    has_dm = liab_dm > m.threshold["diabetes"][cell]
    dm_aware = has_dm & (u["dm_aware"] < _v(dmc["aware"]))
    dm_treated = dm_aware & (u["dm_treat"] < _v(dmc["treated"]) / _v(dmc["aware"]))
    dm_controlled = dm_treated & (u["dm_control"] < _v(dmc["controlled_if_treated"]))
    nd, du, dc = gl["non_diabetic"], gl["diabetic_uncontrolled"], gl["diabetic_controlled"]
    zf = _mix(liab_dm, corr["fpg_dm_liability"], z["fpg"])
    fpg_nd = nd["fpg_mean"] + nd["fpg_sd"] * zf
    fpg_nd = np.where(fpg_nd >= 6.95, 13.9 - fpg_nd, fpg_nd)
    a1c_nd = nd["hba1c_mean"] + nd["hba1c_sd"] * _mix(zf, 0.6, z["a1c"])
    a1c_nd = np.where(a1c_nd >= 6.45, 12.9 - a1c_nd, a1c_nd)
    fpg_du = 7.0 + du["fpg_excess_median"] * np.exp(du["log_sd"] * z["fpg"])
    a1c_du = 6.5 + du["hba1c_excess_median"] * np.exp(du["log_sd"] * z["a1c"])
    fpg_dc = dc["fpg_mean"] + dc["fpg_sd"] * z["fpg"]
    a1c_dc = dc["hba1c_low"] + (6.95 - dc["hba1c_low"]) * u["a1c_control"]
    fpg = np.round(
        np.clip(np.select([dm_controlled, has_dm], [fpg_dc, fpg_du], default=fpg_nd), 3.0, 30.0), 1
    )
    hba1c = np.round(
        np.clip(np.select([dm_controlled, has_dm], [a1c_dc, a1c_du], default=a1c_nd), 4.0, 16.0), 1
    )
    fpg = np.where(has_dm, fpg, np.minimum(fpg, 6.9))
    hba1c = np.where(has_dm, hba1c, np.minimum(hba1c, 6.4))
    hba1c = np.where(dm_controlled, np.minimum(hba1c, 6.9), hba1c)

    # lipids
    tcp, hdlp = prm["total_cholesterol"], prm["hdl_mmol"]
    tc = np.round(
        np.clip(m.tc_mean[cell] + _v(tcp["sd"]) * _mix(z["bmi"], corr["tc_bmi"], z["tc"]), 2.0, 12.0), 2
    )
    hdl_mean = np.where(male, hdlp["mean"]["male"], hdlp["mean"]["female"])
    hdl = np.round(np.clip(hdl_mean + hdlp["sd"] * _mix(z["bmi"], corr["hdl_bmi"], z["hdl"]), 0.4, 3.5), 2)

    # smoking
    sm = prm["smoking_amount"]
    current = z["smoke"] > m.threshold["current_smoking"][cell]
    former = ~current & (z["smoke"] > m.threshold["ever_smoking"][cell])
    cpd_mean = _v(sm["cigarettes_per_day"]) * np.where(male, 1.0, _v(sm["women_factor"]))
    cpd_sd = _v(sm["cigarettes_log_sd"])
    cpd = np.minimum(cpd_mean * np.exp(cpd_sd * z["cpd"] - cpd_sd**2 / 2), 40)
    start = np.clip(_v(sm["start_age"]) + _v(sm["start_age_sd"]) * z["start"], 12, age - 0.5)
    since_quit = np.round(np.maximum(u["quit"] * (age - start - 0.5), 0.1), 1)
    years_smoked = np.maximum(np.where(former, age - start - since_quit, age - start), 0)
    pack_years = np.round(np.where(current | former, cpd / 20 * years_smoked, 0.0), 1)
    years_since_quit = np.where(former, since_quit, np.nan)
    smoking = _labels(("never", "former", "current"), np.select([current, former], [2, 1], default=0))

    # exposures, COPD and symptoms
    ex, cc, sy = prm["exposures"], prm["copd_care"], prm["symptoms"]
    bio = ex["biomass"]
    biomass = z["biomass"] > np.where(urban, _STD.inv_cdf(1 - bio["urban"]), _STD.inv_cdf(1 - bio["rural"]))
    w_s, w_b, w_m = corr["copd_smoking"], corr["copd_biomass"], corr["copd_bmi"]
    liab_copd = (
        w_s * z["smoke"]
        + w_b * z["biomass"]
        + w_m * z["bmi"]
        + math.sqrt(1 - w_s**2 - w_b**2 - w_m**2) * z["copd"]
    )
    has_copd = liab_copd > m.threshold["copd"][cell]
    copd_dx = has_copd & (u["copd_dx"] < _v(cc["diagnosed"]))
    symptomatic = has_copd & (u["copd_symptomatic"] >= _v(cc["asymptomatic"]))
    mix = sy["copd_symptomatic_mix"]
    copd_cough = symptomatic & (u["copd_mix"] < mix["cough_only"] + mix["both"])
    copd_dysp = symptomatic & (u["copd_mix"] >= mix["cough_only"])
    cough_other = np.where(
        current, sy["cough_without_copd"]["current_smoker"], sy["cough_without_copd"]["other"]
    )
    chronic_cough = copd_cough | (~has_copd & (u["cough"] < cough_other))
    dn = sy["dyspnea_without_copd"]
    p_exertion = dn["exertion_at_18"] + dn["exertion_per_year"] * (age - 18)
    flat = np.where(
        has_copd,
        copd_dysp & (u["dyspnea_flat"] < sy["copd_dyspnea_flat_share"]),
        ~has_copd & (u["dyspnea"] < dn["flat"]),
    )
    exertion = ~flat & np.where(has_copd, copd_dysp, u["dyspnea"] < dn["flat"] + p_exertion)
    dyspnea = _labels(("none", "exertion", "flat"), np.select([flat, exertion], [2, 1], default=0))
    occupational = u["occupational"] < np.where(
        male, ex["occupational"]["male"], ex["occupational"]["female"]
    )
    fh_ascvd = _binary(
        _mix(liab_htn, ex["family_history_ascvd"]["liability_weight"], z["fh_ascvd"]),
        _v(ex["family_history_ascvd"]),
    )
    fh_dm = _binary(
        _mix(liab_dm, ex["family_history_diabetes"]["liability_weight"], z["fh_dm"]),
        _v(ex["family_history_diabetes"]),
    )
    fh_resp = _binary(
        _mix(liab_copd, ex["family_history_respiratory"]["liability_weight"], z["fh_resp"]),
        _v(ex["family_history_respiratory"]),
    )
    fh_lung = u["fh_lung"] < _v(ex["family_history_lung_cancer"])
    passive_exposed = u["passive"] < _v(prm["passive_smoking"]["home_exposure"])
    passive_years = np.round(np.where(passive_exposed, (0.3 + 0.7 * u["passive_years"]) * (age - 15), 0.0), 1)

    # gastric markers and PSA
    ga = prm["gastric"]
    hp = z["hp"] > m.threshold["h_pylori"][cell]
    pg_med = np.where(hp, ga["pg_ratio_median"]["hp_positive"], ga["pg_ratio_median"]["hp_negative"])
    pg_ratio = np.round(np.clip(pg_med * np.exp(ga["pg_ratio_log_sd"] * z["pg"]), 0.5, 40.0), 2)
    g17_med = np.where(hp, ga["gastrin17_median"]["hp_positive"], ga["gastrin17_median"]["hp_negative"])
    gastrin17 = np.round(np.clip(g17_med * np.exp(ga["gastrin17_log_sd"] * z["g17"]), 0.1, 150.0), 2)
    psa = np.where(
        male,
        np.round(np.clip(m.psa_median[cell] * np.exp(prm["psa"]["log_sd"] * z["psa"]), 0.01, 500.0), 2),
        np.nan,
    )

    # identity
    family, given = draw_names(male, np.stack([u["name0"], u["name1"], u["name2"], u["name3"]]))
    prefix = _PHONE_PREFIXES[(u["phone"] * len(_PHONE_PREFIXES)).astype(np.int64)]
    consent = prm["consent"]

    return {
        "person_id": person_ids(seed, as_of, block * BLOCK_ROWS, n),
        "sex": _labels(("F", "M"), male.astype(np.int64)),
        "age": age,
        "sbp": sbp,
        "dbp": dbp,
        "bp_treated": bp_treated,
        "tc_mmol": tc,
        "hdl_mmol": hdl,
        "waist_cm": waist,
        "height_cm": height,
        "weight_kg": weight,
        "smoking": smoking,
        "pack_years": pack_years,
        "years_since_quit": years_since_quit,
        "diabetes": dm_aware,
        "fpg_mmol": fpg,
        "hba1c_pct": hba1c,
        "family_history_ascvd": fh_ascvd,
        "family_history_diabetes": fh_dm,
        "north": np.full(n, ctx.north),
        "urban": urban,
        "chronic_cough": chronic_cough,
        "dyspnea": dyspnea,
        "biomass_exposure": biomass,
        "family_history_respiratory": fh_resp,
        "copd": copd_dx,
        "occupational_exposure": occupational,
        "family_history_lung_cancer": fh_lung,
        "passive_smoking_years": passive_years,
        "hp_positive": hp,
        "pg_ratio": pg_ratio,
        "gastrin17": gastrin17,
        "psa": psa,
        "home_facility_code": pl.Series(t.facility_codes, dtype=pl.String).gather(
            pl.Series(facility, dtype=pl.UInt32)
        ),
        "district_code": pl.Series(t.district_codes, dtype=pl.String).gather(
            pl.Series(t.fac_district[facility], dtype=pl.UInt32)
        ),
        "latitude": np.round(lat, 6),
        "longitude": np.round(lon, 6),
        "bmi": bmi,
        "has_hypertension": has_htn,
        "has_diabetes": has_dm,
        "has_copd": has_copd,
        "family_name": family,
        "given_name": given,
        "_birth_ordinal": birth_ord,
        "_district_index": t.fac_district[facility],
        "_male": male,
        "phone": (prefix * 100_000_000 + phone_tail),
        "consent_sms": u["consent_sms"] < consent["sms_contact"],
        "consent_research": u["consent_research"] < consent["research"],
    }


@cache
def _scatter_km() -> dict[str, float]:
    scatter: dict[str, float] = load_yaml("region.yaml")["resident_scatter_km"]
    return scatter


def _frame(ctx: _Context, cols: dict[str, Any], sequencer: NationalIdSequencer) -> pl.DataFrame:
    birth_ord = cols.pop("_birth_ordinal")
    district_idx = cols.pop("_district_index")
    male = cols.pop("_male")
    seq = sequencer.take(district_idx, male, birth_ord)
    nid = national_ids(ctx.district_code_int[district_idx], birth_ord, seq)
    df = pl.DataFrame(cols)
    return df.with_columns(
        pl.col(name).cast(dtype) for name, dtype in {**CONTRACT_SCHEMA, **EXTRA_COLUMNS}.items()
    ).with_columns(
        pl.concat_str("family_name", "given_name").alias("name"),
        pl.Series("birth_date", (birth_ord - _EPOCH).astype(np.int32)).cast(pl.Date),
        nid.alias("national_id"),
        pl.col("phone").cast(pl.String),
        pl.col("years_since_quit").fill_nan(None),
        pl.col("psa").fill_nan(None),
    )


def generate(
    n: int,
    seed: int,
    chunk_size: int = DEFAULT_CHUNK_ROWS,
    *,
    region: Region | None = None,
    as_of: date = DEFAULT_AS_OF,
) -> Iterator[pl.DataFrame]:
    """n synthetic residents in frames of chunk_size rows (the last may be shorter): the screening
    contract columns, the extra Parquet columns and the identity columns. Without a region, the
    default region for n people and this seed is built (no database needed)."""
    if n < 0 or chunk_size < 1:
        raise ValueError("n must be >= 0 and chunk_size >= 1")
    if region is None:
        region = build_region(default_facility_count(n), seed)
    m = model()
    ctx = _Context(
        model=m,
        tables=home_tables(region),
        births=birth_table(as_of, m.min_age),
        district_code_int=np.array([int(d.code) for d in region.districts], dtype=np.int64),
        north=region.north,
    )
    sequencer = NationalIdSequencer(len(region.districts), ctx.births)
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    for block, start in enumerate(range(0, n, BLOCK_ROWS)):
        rows = min(BLOCK_ROWS, n - start)
        columns = {k: v[:rows] for k, v in _block(ctx, seed, as_of, block).items()}
        frame = _frame(ctx, columns, sequencer)
        pending.append(frame)
        pending_rows += rows
        while pending_rows >= chunk_size:
            merged = pl.concat(pending, rechunk=False)
            yield merged.head(chunk_size)
            rest = merged.slice(chunk_size)
            pending, pending_rows = ([rest] if rest.height else []), rest.height
    if pending_rows:
        yield pl.concat(pending)


def population_table(frame: pl.DataFrame) -> pl.DataFrame:
    """The Parquet population table's columns of a generated frame (no direct identifiers)."""
    return frame.select(PARQUET_COLUMNS)
