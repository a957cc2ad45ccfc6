"""One implementation: a person scored alone gets exactly what the same row gets inside a population."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medloop.clinical.catalogue import MODELS
from medloop.clinical.inputs import FIELDS, limits
from medloop.clinical.scoring import evaluate, split_codes
from medloop.screening.frames import normalise
from medloop.screening.person import score_person

INPUTS = sorted({f for m in MODELS.values() for f in m.inputs})


def _value(name: str) -> st.SearchStrategy[Any]:
    field = FIELDS[name]
    if field.kind == "bool":
        values: st.SearchStrategy[Any] = st.booleans()
    elif field.kind == "enum":
        values = st.sampled_from([*field.values, "bogus"])
    else:
        lim = limits()[name]
        span = lim.max - lim.min
        low, high = lim.min - 0.05 * span, lim.max + 0.05 * span  # mostly plausible, sometimes not
        if field.kind == "int":
            values = st.integers(math.floor(low), math.ceil(high))
        else:
            values = st.floats(low, high, allow_nan=False) | st.just(float("nan"))
    return st.none() | values | values


PERSON = st.fixed_dictionaries({name: _value(name) for name in INPUTS})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PERSON, min_size=1, max_size=6))
def test_person_equals_population_row(people: list[dict[str, Any]]) -> None:
    raw = pl.DataFrame(
        people, schema={n: pl.String if FIELDS[n].kind == "enum" else FIELDS[n].dtype for n in INPUTS}
    )
    frame = normalise(raw, INPUTS, "the examples")
    models = list(MODELS.values())
    population = evaluate(frame, models)
    for i, person in enumerate(people):
        row = population.row(i, named=True)
        for model in models:
            alone = score_person(model.name, person)
            score, category, flags, reasons = model.columns()
            assert _same(alone["score"], row[score]), (model.name, person)
            assert alone["category"] == row[category], (model.name, person)
            assert alone["flags"] == split_codes(row[flags]), (model.name, person)
            assert alone["reasons"] == split_codes(row[reasons]), (model.name, person)


@settings(max_examples=60, deadline=None)
@given(PERSON)
def test_every_row_gets_an_outcome(person: dict[str, Any]) -> None:
    for model in MODELS.values():
        result = score_person(model.name, person)
        assert result["category"] in (*model.categories, "error", "not_applicable", "insufficient_data")
        if result["category"] in model.categories:
            assert result["reasons"] == []
        else:
            assert result["score"] is None and result["flags"] == [] and result["reasons"]


# --- against a second implementation ---------------------------------------------------------
# bench/row_by_row.py is the benchmark's baseline: the population models written again, one person
# at a time in plain Python, from the same data files and rules. Agreeing with it on random rows,
# including missing, implausible and not-allowed values, is a check of both.


def _bench_module(name: str) -> ModuleType:
    """A module of bench/, loaded from its file (bench/ on sys.path would shadow packages: it has a
    fhir.py)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).parents[2] / "bench" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


row_by_row = _bench_module("row_by_row")

POPULATION = [m for m in MODELS.values() if m.population]
POPULATION_INPUTS = sorted({f for m in POPULATION for f in m.inputs})
POPULATION_ROW = st.fixed_dictionaries({name: _value(name) for name in POPULATION_INPUTS})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(POPULATION_ROW, min_size=1, max_size=20))
def test_engine_equals_the_row_by_row_implementation(people: list[dict[str, Any]]) -> None:
    assert list(row_by_row.MODELS) == [m.name for m in POPULATION]
    raw = pl.DataFrame(
        people,
        schema={n: pl.String if FIELDS[n].kind == "enum" else FIELDS[n].dtype for n in POPULATION_INPUTS},
    )
    results = evaluate(normalise(raw, POPULATION_INPUTS, "the examples"), POPULATION)
    checks = row_by_row.checks(POPULATION_INPUTS)
    for i, person in enumerate(people):
        row = results.row(i, named=True)
        bad = row_by_row.problems(person, checks)
        for model in POPULATION:
            score, category, flags, reasons = row_by_row.screen(row_by_row.MODELS[model.name], person, bad)
            columns = model.columns()
            assert (row[columns[1]], row[columns[2]], row[columns[3]]) == (category, flags, reasons), (
                model.name,
                person,
            )
            if score is None:
                assert row[columns[0]] is None, (model.name, person)
            else:
                assert row[columns[0]] == pytest.approx(score, rel=1e-9), (model.name, person)
