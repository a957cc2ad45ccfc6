"""The models' numbers are data with a source and a confirmed flag, as the reference pack marks them."""

from __future__ import annotations

from typing import Any

import pytest

from medloop.clinical.catalogue import MODELS, POPULATION_DEFAULT
from medloop.clinical.inputs import FIELDS, POPULATION_FIELDS, limits
from medloop.clinical.scoring import model_data
from medloop.screening.contract import NAMES

# Tables the pack marks UNCONFIRMED (and the Lung-RADS category 1 that the pack does not state).
UNCONFIRMED = {
    ("cdrs", "points"),
    ("copd_sq", "points"),
    ("gastric", "points"),
    ("psa", "start"),
    ("psa", "triage"),
    ("lung_rads", "no_nodule"),
}


def _tables(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_table_has_source_and_confirmed_flag(name: str) -> None:
    doc = model_data(name)
    assert doc["source"] and doc["version"] and doc["title"]
    for table, spec in _tables(doc).items():
        assert spec.get("source"), (name, table)
        assert spec.get("confirmed") is ((name, table) not in UNCONFIRMED), (name, table)


def test_model_confirmed_status() -> None:
    unconfirmed = {name for name, _ in UNCONFIRMED}
    assert {n for n, m in MODELS.items() if not m.confirmed} == unconfirmed


def test_population_models_read_only_contract_columns() -> None:
    population = {f.name for f in POPULATION_FIELDS}
    for name in POPULATION_DEFAULT:
        assert set(MODELS[name].required) <= population, name
    assert {"heart", "lung_rads", "lung_screening_uspstf"}.isdisjoint(POPULATION_DEFAULT)


def test_contract_keeps_its_columns() -> None:
    issue_4 = (
        "person_id sex age sbp dbp bp_treated tc_mmol hdl_mmol waist_cm height_cm weight_kg smoking "
        "pack_years years_since_quit diabetes fpg_mmol hba1c_pct family_history_ascvd "
        "family_history_diabetes north urban "
        "chronic_cough dyspnea biomass_exposure family_history_respiratory copd occupational_exposure "
        "family_history_lung_cancer passive_smoking_years hp_positive pg_ratio gastrin17 psa"
    )
    assert tuple(issue_4.split()) == NAMES
    assert NAMES[1:] == tuple(f.name for f in POPULATION_FIELDS)


def test_every_numeric_input_has_limits() -> None:
    numeric = {n for n, f in FIELDS.items() if f.kind in ("int", "float")}
    assert numeric == set(limits())
    assert limits()["sbp"].min == 40 and not limits()["age"].confirmed
