"""The synthetic population: prevalences near the cited figures, plausible values, consistent
measurements, valid national IDs, the contract's columns and types, determinism."""

from __future__ import annotations

import uuid
from datetime import date

import numpy as np
import polars as pl
import pytest

from medloop.people.identifiers import national_id_check_char, normalise_national_id
from medloop.screening.contract import COLUMNS
from medloop.sim.population import DEFAULT_AS_OF, PARQUET_COLUMNS, generate, population_table
from medloop.sim.region import build_region, load_yaml

N = 200_000


@pytest.fixture(scope="module")
def people() -> pl.DataFrame:
    return pl.concat(list(generate(N, seed=11)))


def share(df: pl.DataFrame, expr: pl.Expr) -> float:
    return float(df.select(expr.mean()).item())


# Tolerances: about 4 binomial standard errors at 200k people, plus the calibration's rounding.
@pytest.mark.parametrize(
    ("label", "expr", "target", "tolerance"),
    [
        ("hypertension (China 2020 report: 27.5 %)", pl.col("has_hypertension"), 0.275, 0.006),
        ("diabetes (Wang L. JAMA 2021: 12.4 %)", pl.col("has_diabetes"), 0.124, 0.005),
        ("urban (2020 census: 63.89 %)", pl.col("urban"), 0.6389, 0.015),
        ("TC >= 6.2 (China 2020 report: 8.2 %)", pl.col("tc_mmol") >= 6.2, 0.082, 0.004),
        ("overweight (34.3 %)", (pl.col("bmi") >= 24) & (pl.col("bmi") < 28), 0.343, 0.008),
        ("obese (16.4 %)", pl.col("bmi") >= 28, 0.164, 0.006),
        ("H. pylori (Ren S. 2022: 40.0 %)", pl.col("hp_positive"), 0.400, 0.008),
    ],
)
def test_prevalence_matches_the_cited_figure(
    people: pl.DataFrame, label: str, expr: pl.Expr, target: float, tolerance: float
) -> None:
    assert share(people, expr) == pytest.approx(target, abs=tolerance), label


def test_copd_at_40_and_over_matches_wang_2018(people: pl.DataFrame) -> None:
    over40 = people.filter(pl.col("age") >= 40)
    assert share(over40, pl.col("has_copd")) == pytest.approx(0.137, abs=0.007)
    young = people.filter(pl.col("age") < 40)
    assert share(young, pl.col("has_copd")) == pytest.approx(0.021, abs=0.004)
    men, women = (over40.filter(pl.col("sex") == s) for s in ("M", "F"))
    assert share(men, pl.col("has_copd")) > 2 * share(women, pl.col("has_copd"))  # Fang 2018: 19.0 vs 8.1


def test_smoking_matches_the_tobacco_survey(people: pl.DataFrame) -> None:
    men, women = (people.filter(pl.col("sex") == s) for s in ("M", "F"))
    assert share(men, pl.col("smoking") == "current") == pytest.approx(0.505, abs=0.008)
    assert share(women, pl.col("smoking") == "current") == pytest.approx(0.021, abs=0.003)
    ever = men.filter(pl.col("smoking") != "never")
    assert share(ever, pl.col("smoking") == "former") == pytest.approx(0.1964, abs=0.01)
    current = people.filter(pl.col("smoking") == "current")
    assert current["pack_years"].median() > 5


def test_age_and_sex_structure_follows_the_census(people: pl.DataFrame) -> None:
    groups = load_yaml("population.yaml")["age_sex"]["groups"]
    ages = np.arange(18, 101)
    men = np.zeros(len(ages))
    women = np.zeros(len(ages))
    for first, last, millions, ratio in groups:
        per_age = millions / (last - first + 1)
        sel = (ages >= first) & (ages <= last)
        men[sel] = per_age * ratio / (100 + ratio)
        women[sel] = per_age * 100 / (100 + ratio)
    total = men.sum() + women.sum()
    assert share(people, pl.col("sex") == "M") == pytest.approx(men.sum() / total, abs=0.005)
    for lo, hi in [(18, 29), (30, 44), (45, 59), (60, 74), (75, 100)]:
        sel = (ages >= lo) & (ages <= hi)
        expected = (men[sel].sum() + women[sel].sum()) / total
        assert share(people, pl.col("age").is_between(lo, hi)) == pytest.approx(expected, abs=0.005), (lo, hi)
    # Consistency with the 2020 census communiqué: 60+ is about 23.5 % of adults (264.02 M of 1,123 M).
    assert share(people, pl.col("age") >= 60) == pytest.approx(0.235, abs=0.01)


def test_mean_weights_are_those_of_the_2020_report(people: pl.DataFrame) -> None:
    by_sex = dict(people.group_by("sex").agg(pl.col("weight_kg").mean()).iter_rows())
    assert by_sex["M"] == pytest.approx(69.6, abs=2.5)
    assert by_sex["F"] == pytest.approx(59.0, abs=2.5)
    young_men = people.filter((pl.col("sex") == "M") & (pl.col("age") <= 44))
    assert young_men["height_cm"].mean() == pytest.approx(169.7, abs=0.5)


def test_risk_rises_with_age(people: pl.DataFrame) -> None:
    by_age = people.group_by(pl.col("age") // 20).agg(
        pl.col("has_hypertension").mean(), pl.col("has_diabetes").mean(), pl.col("sbp").mean()
    )
    ordered = by_age.sort("age")
    for col in ("has_hypertension", "has_diabetes", "sbp"):
        values = ordered[col].to_list()[:4]  # 0-19 (18-19), 20-39, 40-59, 60-79
        assert values == sorted(values), col


def test_risk_factors_are_correlated(people: pl.DataFrame) -> None:
    obese, lean = people.filter(pl.col("bmi") >= 28), people.filter(pl.col("bmi") < 24)
    assert share(obese, pl.col("has_hypertension")) > 1.3 * share(lean, pl.col("has_hypertension"))
    assert share(obese, pl.col("has_diabetes")) > 1.3 * share(lean, pl.col("has_diabetes"))
    smokers = people.filter((pl.col("smoking") == "current") & (pl.col("sex") == "M") & (pl.col("age") >= 40))
    never = people.filter((pl.col("smoking") == "never") & (pl.col("sex") == "M") & (pl.col("age") >= 40))
    assert share(smokers, pl.col("has_copd")) > 1.5 * share(never, pl.col("has_copd"))
    copd = people.filter(pl.col("has_copd"))
    assert share(copd, pl.col("chronic_cough")) > 2 * share(
        people.filter(~pl.col("has_copd")), pl.col("chronic_cough")
    )
    assert share(people.filter(pl.col("hp_positive")), pl.col("pg_ratio") < 3.89) > share(
        people.filter(~pl.col("hp_positive")), pl.col("pg_ratio") < 3.89
    )


def test_measurements_agree_with_the_truth_columns(people: pl.DataFrame) -> None:
    htn = (pl.col("sbp") >= 140) | (pl.col("dbp") >= 90) | pl.col("bp_treated")
    assert people.select((htn == pl.col("has_hypertension")).all()).item()
    dm = pl.col("diabetes") | (pl.col("fpg_mmol") >= 7.0) | (pl.col("hba1c_pct") >= 6.5)
    assert people.select((dm == pl.col("has_diabetes")).all()).item()
    assert people.select((~pl.col("copd") | pl.col("has_copd")).all()).item()
    assert people.select((~pl.col("bp_treated") | pl.col("has_hypertension")).all()).item()
    # diagnosed fractions: diabetes awareness 36.7 % (Wang L. 2021), COPD 12.0 % (Wang C. 2018)
    dm_people = people.filter(pl.col("has_diabetes"))
    assert share(dm_people, pl.col("diabetes")) == pytest.approx(0.367, abs=0.02)
    copd_people = people.filter(pl.col("has_copd"))
    assert share(copd_people, pl.col("copd")) == pytest.approx(0.12, abs=0.02)


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        ("age", 18, 100),
        ("sbp", 80, 260),
        ("dbp", 40, 150),
        ("tc_mmol", 2.0, 12.0),
        ("hdl_mmol", 0.3, 4.0),
        ("waist_cm", 50, 170),
        ("height_cm", 120, 215),
        ("weight_kg", 25, 260),
        ("bmi", 13, 65),
        ("fpg_mmol", 2.5, 35),
        ("hba1c_pct", 3.5, 17),
        ("pack_years", 0, 200),
        ("years_since_quit", 0, 90),
        ("passive_smoking_years", 0, 90),
        ("pg_ratio", 0.3, 50),
        ("gastrin17", 0.05, 200),
        ("psa", 0.0, 600),
    ],
)
def test_values_are_physiologically_plausible(
    people: pl.DataFrame, column: str, low: float, high: float
) -> None:
    values = people[column].drop_nulls()
    assert values.min() >= low and values.max() <= high, (column, values.min(), values.max())
    assert values.is_nan().sum() == 0 if values.dtype == pl.Float64 else True


def test_conditional_fields(people: pl.DataFrame) -> None:
    assert people.select((pl.col("sbp") > pl.col("dbp")).all()).item()
    never = people.filter(pl.col("smoking") == "never")
    assert never["pack_years"].max() == 0
    assert people.select(
        (pl.col("years_since_quit").is_not_null() == (pl.col("smoking") == "former")).all()
    ).item()
    assert people.select((pl.col("psa").is_not_null() == (pl.col("sex") == "M")).all()).item()
    assert people["north"].all()


def test_contract_columns_and_types(people: pl.DataFrame) -> None:
    table = population_table(people)
    assert table.columns == list(PARQUET_COLUMNS)
    kinds = {"str": pl.String, "enum": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
    for column in COLUMNS:
        assert table.schema[column.name] == kinds[column.kind], column.name
        if column.kind == "enum":
            assert set(table[column.name].unique()) <= set(column.values), column.name
    required = [c.name for c in COLUMNS if c.name not in ("years_since_quit", "psa")]
    assert table.select(pl.col(required).null_count().sum()).row(0) == tuple([0] * len(required))
    assert not {"name", "national_id", "phone", "birth_date"} & set(table.columns)


def test_national_ids_are_valid_and_unique(people: pl.DataFrame) -> None:
    ids = people["national_id"].to_list()
    assert len(set(ids)) == len(ids)
    assert all(national_id_check_char(v[:17]) == v[17] for v in ids)
    for v in ids[:1000]:
        normalise_national_id(v)
    sample = people.head(20_000)
    assert sample.select(
        (pl.col("national_id").str.slice(0, 6) == pl.col("district_code")).all().alias("region"),
        (pl.col("national_id").str.slice(6, 8) == pl.col("birth_date").dt.strftime("%Y%m%d"))
        .all()
        .alias("born"),
        ((pl.col("national_id").str.slice(14, 3).cast(pl.Int64) % 2 == 1) == (pl.col("sex") == "M"))
        .all()
        .alias("sex"),
    ).row(0) == (True, True, True)


def test_ages_follow_from_birth_dates(people: pl.DataFrame) -> None:
    ref = DEFAULT_AS_OF
    sample = people.head(20_000)
    for born, age in sample.select("birth_date", "age").iter_rows():
        assert ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day)) == age


def test_identity_fields(people: pl.DataFrame) -> None:
    ids = people["person_id"].to_list()
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(v).version == 7 for v in ids[:1000])
    assert ids[:1000] == sorted(ids[:1000]), "ids grow with the row number (sequential index inserts)"
    assert people.select(pl.col("phone").str.contains(r"^1[3-9]\d{9}$").all()).item()
    assert people.select((pl.col("name") == pl.col("family_name") + pl.col("given_name")).all()).item()
    assert people["given_name"].str.len_chars().is_between(1, 2).all()
    assert share(people, pl.col("family_name").is_in(["王", "李", "张", "刘", "陈"])) == pytest.approx(
        0.31, abs=0.02
    )


def test_residents_live_near_their_home_facility(people: pl.DataFrame) -> None:
    region = build_region(250, 11)  # the default region for 200k people
    homes = {f.code: f for f in region.facilities}
    assert {homes[c].tier for c in people["home_facility_code"].unique()} <= {"primary", "village_clinic"}
    sample = people.head(2000)
    for code, lat, district in sample.select("home_facility_code", "latitude", "district_code").iter_rows():
        assert abs(lat - homes[code].latitude) < 0.15
        assert homes[code].district_code == district


def test_same_seed_same_people_whatever_the_chunking() -> None:
    region = build_region(40, 5)
    a = pl.concat(list(generate(120_000, 5, 100_000, region=region)))
    b = pl.concat(list(generate(120_000, 5, 7_000, region=region)))
    assert a.equals(b)
    head = pl.concat(list(generate(1_000, 5, region=region)))
    assert head.equals(a.head(1_000))


def test_different_seed_or_date_gives_different_people() -> None:
    region = build_region(40, 5)
    a = next(generate(2_000, 5, region=region))
    b = next(generate(2_000, 6, region=region))
    c = next(generate(2_000, 5, region=region, as_of=date(2024, 1, 1)))
    assert not set(a["person_id"]) & set(b["person_id"])
    assert not a.equals(c)
    assert a["sbp"].to_list() != b["sbp"].to_list()


def test_chunks_have_the_requested_size() -> None:
    sizes = [f.height for f in generate(25_000, 1, 10_000)]
    assert sizes == [10_000, 10_000, 5_000]
    assert list(generate(0, 1)) == []
    with pytest.raises(ValueError):
        next(generate(10, 1, 0))
