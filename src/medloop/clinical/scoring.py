"""What every screening risk model shares, and the one evaluator that runs them.

A model turns input columns into Polars expressions (an `Outcome`): a category code (null when the
inputs do not determine it), an optional score, flags, and the rules under which the model does not
apply. `evaluate()` wraps every outcome with what all models need, so that the same expressions
serve one person (a one-row frame) and a population of millions:

- an input outside its data-quality limits (or an enum value that is not allowed) → category
  "error", reasons "implausible:<field>" / "invalid:<field>";
- a not-applicable rule holding (e.g. age outside the model's valid range) → "not_applicable",
  reasons naming the rule — never an extrapolated score;
- a category that the inputs leave undetermined → "insufficient_data", reasons "missing:<field>"
  for each missing input that matters for that person;
- otherwise the model's category, score and flags.

Speed: categories are small integer codes, and reasons and flags are bit sets, all named through
Enum lookup tables built once per model (a gather, not a string operation per row, and cheap to
write as dictionary-encoded columns); and inputs are
checked per column first, so per-row checks run only on columns that hold a missing or invalid
value in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import polars as pl

from medloop.clinical.codes import load_data
from medloop.clinical.inputs import FIELDS, invalid

ERROR = "error"
NOT_APPLICABLE = "not_applicable"
INSUFFICIENT_DATA = "insufficient_data"
STATUSES = (ERROR, NOT_APPLICABLE, INSUFFICIENT_DATA)
SEPARATOR = ";"  # between codes in the flags and reasons columns

CODE = pl.UInt8  # dtype of category codes


@dataclass(frozen=True)
class Outcome:
    """The model-specific part, as expressions over the input columns."""

    category: pl.Expr  # code: index into Model.categories; null = not determined by the inputs
    score: pl.Expr | None = None  # numeric; None for pure classifications
    flags: Mapping[str, pl.Expr] = field(default_factory=dict)  # code → Boolean
    not_applicable: Mapping[str, pl.Expr] = field(default_factory=dict)  # reason code → Boolean
    needed: Mapping[str, pl.Expr] = field(default_factory=dict)  # input → when its absence matters


class Stage:
    """Lets a model compute a value once and refer to it many times (a column of its own, computed
    before the model's outcome), instead of repeating the expression in every place it is used."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.kept: list[pl.Expr] = []

    def keep(self, name: str, expr: pl.Expr) -> pl.Expr:
        column = f"__{self.model}_{name}"
        self.kept.append(expr.alias(column))
        return pl.col(column)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one instance per model
class Model:
    name: str
    title: str
    version: str
    source: str
    confirmed: bool  # every table of its data file is confirmed against the primary source
    categories: tuple[str, ...]
    required: tuple[str, ...]  # input columns the model cannot run without
    optional: tuple[str, ...]  # input columns a table may lack (their values count as unknown)
    valid: Mapping[str, Mapping[str, float]]  # documented valid ranges of inputs
    build: Callable[[Stage], Outcome] = field(repr=False)
    population: bool = True  # part of the default set for population screening

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.required + self.optional

    def columns(self) -> tuple[str, str, str, str]:
        """Output columns: score, category, flags, reasons."""
        n = self.name
        return f"{n}_score", f"{n}_category", f"{n}_flags", f"{n}_reasons"

    @property
    def category_dtype(self) -> pl.Enum:
        return pl.Enum([*self.categories, *STATUSES])


class Categories:
    """A model's category labels and the integer codes its outcome is computed on."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self._code = {label: i for i, label in enumerate(self.labels)}

    def __call__(self, label: str) -> pl.Expr:
        return pl.lit(self._code[label], dtype=CODE)

    def codes(self, labels: Sequence[str]) -> list[int]:
        return [self._code[label] for label in labels]

    def banded(self, x: pl.Expr, bands: Sequence[Mapping[str, Any]]) -> pl.Expr:
        """`banded` over bands whose values are category labels, giving their codes."""
        return banded(x, [{**b, "category": self._code[b["category"]]} for b in bands], "category", CODE)


def model_data(name: str) -> dict[str, Any]:
    """A model's data file (medloop/clinical/data/<name>.yaml)."""
    return load_data(f"{name}.yaml")


def define(
    doc: Mapping[str, Any],
    *,
    categories: Categories,
    required: Sequence[str],
    build: Callable[[Stage], Outcome],
    optional: Sequence[str] = (),
    population: bool = True,
) -> Model:
    """A model whose name, title, version, source, valid ranges and confirmed status come from its
    data file."""
    valid = {k: v for k, v in doc.get("valid", {}).items() if k not in ("source", "confirmed")}
    return Model(
        name=str(doc["model"]),
        title=str(doc["title"]),
        version=str(doc["version"]),
        source=str(doc["source"]),
        confirmed=all_confirmed(doc),
        categories=categories.labels,
        required=tuple(required),
        optional=tuple(optional),
        valid=valid,
        build=build,
        population=population,
    )


def outside(name: str, valid: Mapping[str, float]) -> tuple[str, pl.Expr]:
    """A not-applicable rule: the input lies outside the model's valid range (bounds inclusive)."""
    col = pl.col(name)
    lo, hi = valid.get("min"), valid.get("max")
    if lo is not None and hi is not None:
        return f"{name}_outside_{lo:g}_{hi:g}", ~col.is_between(lo, hi)
    if lo is not None:
        return f"{name}_below_{lo:g}", col < lo
    if hi is not None:
        return f"{name}_above_{hi:g}", col > hi
    raise ValueError(f"valid range of {name} has no bound")


def all_confirmed(doc: Any) -> bool:
    """True when every `confirmed` flag anywhere in a data document is true."""
    if isinstance(doc, Mapping):
        return all(bool(v) if k == "confirmed" else all_confirmed(v) for k, v in doc.items())
    if isinstance(doc, list):
        return all(all_confirmed(v) for v in doc)
    return True


def banded(x: pl.Expr, bands: Sequence[Mapping[str, Any]], key: str, dtype: Any = None) -> pl.Expr:
    """The `key` value of the highest band that `x` reaches. Bands are in increasing order; a band
    starts at `min` (x ≥ min) or `above` (x > above); a band without either is everything below
    the next band. Null when `x` is null or below every band."""
    chain: Any = None
    for band in reversed(bands):
        if "min" in band:
            cond = x >= band["min"]
        elif "above" in band:
            cond = x > band["above"]
        else:
            cond = x.is_not_null()
        value = pl.lit(band[key], dtype=dtype)
        chain = pl.when(cond).then(value) if chain is None else chain.when(cond).then(value)
    result: pl.Expr = chain.otherwise(None)
    return result


def enum_points(name: str, points: Mapping[str, float]) -> pl.Expr:
    """The points of each value of the enum input `name`; null where it is missing or not allowed.
    A lookup by the enum's codes (its values in order, then INVALID): a gather, not a text match."""
    table = [points.get(value) for value in FIELDS[name].values] + [None]
    return pl.lit(pl.Series(table, dtype=pl.Int32)).gather(pl.col(name).to_physical())


def bmi() -> pl.Expr:
    """Body-mass index (kg/m²) from weight_kg and height_cm, to 6 decimals: the bands start at
    exact values, and unrounded, a BMI that is exactly on a band's lower bound can come out a
    hair below it (160 cm and 61.44 kg give 23.999999999999993, not 24)."""
    metres = pl.col("height_cm") / 100.0
    return (pl.col("weight_kg") / (metres * metres)).round(6)


def points(condition: pl.Expr, value: float) -> pl.Expr:
    """`value` points where a yes/no input is yes, 0 where it is no, null where unknown."""
    return condition.cast(pl.Int32) * value


MASK = pl.UInt32  # bit sets over a model's inputs, rules or flags


def _bits(conditions: Sequence[tuple[int, pl.Expr]]) -> pl.Expr:
    """Σ bit where condition (null counts as false); the literal 0 when there are none."""
    zero = pl.lit(0, dtype=MASK)
    if not conditions:
        return zero
    return pl.sum_horizontal(
        pl.when(c).then(pl.lit(bit, dtype=MASK)).otherwise(zero) for bit, c in conditions
    )


def _subsets(n: int) -> Iterator[tuple[int, list[int]]]:
    """Every non-empty subset of range(n): its bit mask and its members."""
    for mask in range(1, 1 << n):
        yield mask, [i for i in range(n) if mask >> i & 1]


def _reason_of_field(name: str) -> str:
    return ("invalid:" if FIELDS[name].kind == "enum" else "implausible:") + name


@dataclass(frozen=True)
class _Built:
    """A model's outcome and the tables that name its codes, built once per model."""

    kept: tuple[pl.Expr, ...]  # the model's own values, in dependency order
    outcome: Outcome
    categories: pl.Series  # status code → category (Enum)
    flags: pl.Series  # flag bit set → flags text (Enum; null for none)
    reasons: pl.Series  # reason index → reasons text (Enum; null for none)


@cache
def _build(model: Model) -> _Built:
    stage = Stage(model.name)
    out = model.build(stage)
    k = len(model.inputs)
    assert k <= 16, model.name  # reason tables have 2·2^k entries
    flag_texts = [SEPARATOR.join(list(out.flags)[i] for i in m) for _, m in _subsets(len(out.flags))]
    reasons: list[str | None] = [None] * ((2 << k) + (1 << len(out.not_applicable)))
    reasons[1 << k] = "undetermined"
    checked = {i for i, f in enumerate(model.inputs) if FIELDS[f].kind != "bool"}  # yes/no cannot be invalid
    for mask, members in _subsets(k):
        if checked.issuperset(members):
            reasons[mask] = SEPARATOR.join(_reason_of_field(model.inputs[i]) for i in members)
        reasons[(1 << k) + mask] = SEPARATOR.join(f"missing:{model.inputs[i]}" for i in members)
    na_codes = list(out.not_applicable)
    for mask, members in _subsets(len(na_codes)):
        reasons[(2 << k) + mask] = SEPARATOR.join(na_codes[i] for i in members)
    return _Built(
        kept=tuple(stage.kept),
        outcome=out,
        categories=pl.Series([*model.categories, *STATUSES], dtype=model.category_dtype),
        flags=pl.Series([None, *flag_texts], dtype=pl.Enum(flag_texts)),
        reasons=pl.Series(reasons, dtype=pl.Enum([r for r in reasons if r is not None])),
    )


@dataclass(frozen=True)
class _Compiled:
    kept: tuple[pl.Expr, ...]
    stage1: tuple[pl.Expr, ...]  # masks, category code, score, flags
    stage2: tuple[pl.Expr, ...]  # status code: category, or error / not applicable / insufficient
    stage3: tuple[pl.Expr, ...]  # the output columns


@cache
def _compile(model: Model, with_bad: frozenset[str], with_null: frozenset[str]) -> _Compiled:
    """The model's expressions for a batch in which only the `with_bad` inputs hold invalid values
    and only the `with_null` inputs hold missing ones (per-row checks on the others are skipped)."""
    built = _build(model)
    out, inputs, k = built.outcome, model.inputs, len(model.inputs)
    t = {
        name: f"__{model.name}_{name}"
        for name in ("bad", "na", "missing", "category", "score", "flags", "status")
    }
    needed = {f: pl.col(f).is_null() & out.needed.get(f, pl.lit(True)).fill_null(True) for f in with_null}
    stage1 = (
        _bits([(1 << i, invalid(f)) for i, f in enumerate(inputs) if f in with_bad]).alias(t["bad"]),
        _bits([(1 << i, c) for i, c in enumerate(out.not_applicable.values())]).alias(t["na"]),
        _bits([(1 << i, needed[f]) for i, f in enumerate(inputs) if f in with_null]).alias(t["missing"]),
        out.category.cast(CODE).alias(t["category"]),
        (out.score if out.score is not None else pl.lit(None)).cast(pl.Float64).alias(t["score"]),
        _bits([(1 << i, c) for i, c in enumerate(out.flags.values())]).alias(t["flags"]),
    )
    bad, na, missing, category = (pl.col(t[name]) for name in ("bad", "na", "missing", "category"))
    n = len(model.categories)
    stage2 = (
        pl.when(bad != 0)
        .then(pl.lit(n, dtype=CODE))
        .when(na != 0)
        .then(pl.lit(n + 1, dtype=CODE))
        .when(category.is_null())
        .then(pl.lit(n + 2, dtype=CODE))
        .otherwise(category)
        .alias(t["status"]),
    )
    status = pl.col(t["status"])
    ok = status < n
    reason = (
        pl.when(status == n)
        .then(bad)
        .when(status == n + 1)
        .then(na + (2 << k))
        .when(status == n + 2)
        .then(missing + (1 << k))
        .otherwise(0)
    )
    score_col, category_col, flags_col, reasons_col = model.columns()
    # A model without a score or without flags gets a constant column, not a pass over the rows.
    score = pl.when(ok).then(pl.col(t["score"])) if out.score is not None else pl.lit(None, dtype=pl.Float64)
    flags = (
        pl.lit(built.flags).gather(pl.when(ok).then(pl.col(t["flags"])).otherwise(0))
        if out.flags
        else pl.lit(None, dtype=built.flags.dtype)
    )
    stage3 = (
        score.alias(score_col),
        pl.lit(built.categories).gather(status).alias(category_col),
        flags.alias(flags_col),
        pl.lit(built.reasons).gather(reason).alias(reasons_col),
    )
    return _Compiled(built.kept, stage1, stage2, stage3)


def _issues(frame: pl.DataFrame, fields: Sequence[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The fields that hold at least one invalid value, and those that hold a missing one."""
    invalid_any = frame.select(invalid(f).fill_null(False).any().alias(f) for f in fields).row(0, named=True)
    return (
        frozenset(f for f in fields if invalid_any[f]),
        frozenset(f for f in fields if frame.get_column(f).null_count()),
    )


def evaluate(frame: pl.DataFrame, models: Sequence[Model], keep: Sequence[str] = ()) -> pl.DataFrame:
    """Run `models` over a frame of typed input columns (see `medloop.clinical.inputs`). Returns the
    `keep` columns followed by score, category, flags and reasons of each model.

    Every required input of every model must be a column; optional inputs that are absent count as
    unknown for every row."""
    absent = sorted({f for m in models for f in m.required if f not in frame.columns})
    if absent:
        raise ValueError(f"frame lacks required input columns: {', '.join(absent)}")
    used = list(dict.fromkeys(f for m in models for f in m.inputs))
    frame = frame.select(
        *keep,
        *(pl.col(f) if f in frame.columns else pl.lit(None, dtype=FIELDS[f].dtype).alias(f) for f in used),
    )
    with_bad, with_null = _issues(frame, used)
    compiled = [_compile(m, with_bad & set(m.inputs), with_null & set(m.inputs)) for m in models]
    lazy = frame.lazy()
    for depth in range(max(len(c.kept) for c in compiled)):
        lazy = lazy.with_columns(c.kept[depth] for c in compiled if depth < len(c.kept))
    return (
        lazy.with_columns(e for c in compiled for e in c.stage1)
        .with_columns(e for c in compiled for e in c.stage2)
        .select(*keep, *(e for c in compiled for e in c.stage3))
        .collect()
    )


def split_codes(value: str | None) -> list[str]:
    """The codes of one flags or reasons cell."""
    return value.split(SEPARATOR) if value else []
