"""What every screening risk model shares, and the one evaluator that runs them.

A model is a function from input columns to Polars expressions (an `Outcome`): a category (null
when the inputs do not determine it), an optional score, flags, and the rules under which the model
does not apply. `expressions()` wraps an outcome with what every model needs, so the same
expressions serve one person (a one-row frame) and a population of millions:

- an input outside its data-quality limits (or an enum value that is not allowed) → category
  "error", reasons "implausible:<field>" / "invalid:<field>";
- a not-applicable rule holding (e.g. age outside the model's valid range) → "not_applicable",
  reasons naming the rule — never an extrapolated score;
- a category that the inputs leave undetermined → "insufficient_data", reasons "missing:<field>"
  for each missing input that matters for that person;
- otherwise the model's category, score and flags.

Reasons and flags are computed as bit sets over the model's inputs, rules and flags, and named
through a lookup table built once per model, which keeps them cheap over millions of rows.
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

_ERROR_KEY, _NA_KEY, _MISSING_KEY = 1 << 60, 2 << 60, 3 << 60


@dataclass(frozen=True)
class Outcome:
    """The model-specific part, as expressions over the input columns."""

    category: pl.Expr  # String; null = not determined by the inputs
    score: pl.Expr | None = None  # numeric; None for pure classifications
    flags: Mapping[str, pl.Expr] = field(default_factory=dict)  # code → Boolean
    not_applicable: Mapping[str, pl.Expr] = field(default_factory=dict)  # reason code → Boolean
    needed: Mapping[str, pl.Expr] = field(default_factory=dict)  # input → when its absence matters


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


def model_data(name: str) -> dict[str, Any]:
    """A model's data file (medloop/clinical/data/<name>.yaml)."""
    return load_data(f"{name}.yaml")


def define(
    doc: Mapping[str, Any],
    *,
    categories: Sequence[str],
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
        categories=tuple(categories),
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


def banded(x: pl.Expr, bands: Sequence[Mapping[str, Any]], key: str) -> pl.Expr:
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
        value = pl.lit(band[key])
        chain = pl.when(cond).then(value) if chain is None else chain.when(cond).then(value)
    result: pl.Expr = chain.otherwise(None)
    return result


def bmi() -> pl.Expr:
    """Body-mass index (kg/m²) from weight_kg and height_cm."""
    metres = pl.col("height_cm") / 100.0
    return pl.col("weight_kg") / (metres * metres)


def points(condition: pl.Expr, value: float) -> pl.Expr:
    """`value` points where a yes/no input is yes, 0 where it is no, null where unknown."""
    return condition.cast(pl.Int32) * value


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


# Every input field has one bit, so invalid and missing inputs are found once per batch for all
# models; a model looks at its own bits. The top bits of a reason key say which kind of reason.
_FIELD_BIT = {name: 1 << i for i, name in enumerate(FIELDS)}
assert len(_FIELD_BIT) < 60
_BAD, _NULL = "__bad_inputs", "__null_inputs"


def _bits(conditions: Sequence[tuple[int, pl.Expr]]) -> pl.Expr:
    if not conditions:
        return pl.lit(0, dtype=pl.UInt64)
    zero = pl.lit(0, dtype=pl.UInt64)
    return pl.sum_horizontal(
        pl.when(c).then(pl.lit(bit, dtype=pl.UInt64)).otherwise(zero) for bit, c in conditions
    )


def _subsets(bits: Sequence[int]) -> Iterator[tuple[int, list[int]]]:
    """Every non-empty subset of `bits`: its mask and its members' positions in `bits`."""
    for choice in range(1, 1 << len(bits)):
        members = [i for i in range(len(bits)) if choice >> i & 1]
        yield sum(bits[i] for i in members), members


def _reason_of_field(name: str) -> str:
    return ("invalid:" if FIELDS[name].kind == "enum" else "implausible:") + name


def _lookup(keys: list[int], texts: list[str | None]) -> tuple[pl.Series, pl.Series]:
    return pl.Series(keys, dtype=pl.UInt64), pl.Series(texts, dtype=pl.String)


@dataclass(frozen=True)
class _Compiled:
    kept: tuple[pl.Expr, ...]  # the model's own values, in dependency order
    stage1: tuple[pl.Expr, ...]  # masks, raw category, score, flags
    stage2: tuple[pl.Expr, ...]  # the output columns


@cache
def _compile(model: Model) -> _Compiled:
    stage = Stage(model.name)
    out = model.build(stage)
    inputs = model.inputs
    field_bits = [_FIELD_BIT[f] for f in inputs]
    own = sum(field_bits)
    t = {k: f"__{model.name}_{k}" for k in ("bad", "na", "missing", "category", "score", "flags")}
    not_needed = _bits([(_FIELD_BIT[f], ~cond) for f, cond in out.needed.items()])
    stage1 = (
        (pl.col(_BAD) & pl.lit(own, dtype=pl.UInt64)).alias(t["bad"]),
        _bits([(1 << i, c) for i, c in enumerate(out.not_applicable.values())]).alias(t["na"]),
        (pl.col(_NULL) & pl.lit(own, dtype=pl.UInt64) & ~not_needed).alias(t["missing"]),
        out.category.cast(pl.String).alias(t["category"]),
        (out.score if out.score is not None else pl.lit(None)).cast(pl.Float64).alias(t["score"]),
        _bits([(1 << i, c) for i, c in enumerate(out.flags.values())]).alias(t["flags"]),
    )

    # Every reason a row can have, named once: its key is a bit set plus the kind of reason.
    keys: list[int] = [0, _MISSING_KEY]
    texts: list[str | None] = [None, "undetermined"]
    for mask, members in _subsets(field_bits):
        keys += [_ERROR_KEY | mask, _MISSING_KEY | mask]
        texts += [
            SEPARATOR.join(_reason_of_field(inputs[i]) for i in members),
            SEPARATOR.join(f"missing:{inputs[i]}" for i in members),
        ]
    na_codes = list(out.not_applicable)
    for mask, members in _subsets([1 << i for i in range(len(na_codes))]):
        keys.append(_NA_KEY | mask)
        texts.append(SEPARATOR.join(na_codes[i] for i in members))
    reason_old, reason_new = _lookup(keys, texts)
    flag_codes = list(out.flags)
    flag_old, flag_new = _lookup(
        [0, *(mask for mask, _ in _subsets([1 << i for i in range(len(flag_codes))]))],
        [
            None,
            *(
                SEPARATOR.join(flag_codes[i] for i in m)
                for _, m in _subsets([1 << i for i in range(len(flag_codes))])
            ),
        ],
    )

    bad, na, missing, category = (pl.col(t[k]) for k in ("bad", "na", "missing", "category"))
    is_bad, is_na, undetermined = bad != 0, na != 0, category.is_null()
    ok = ~is_bad & ~is_na & ~undetermined
    reason_key = (
        pl.when(is_bad)
        .then(bad | _ERROR_KEY)
        .when(is_na)
        .then(na | _NA_KEY)
        .when(undetermined)
        .then(missing | _MISSING_KEY)
        .otherwise(0)
        .cast(pl.UInt64)
    )
    score_col, category_col, flags_col, reasons_col = model.columns()
    stage2 = (
        pl.when(ok).then(pl.col(t["score"])).otherwise(None).alias(score_col),
        pl.when(is_bad)
        .then(pl.lit(ERROR))
        .when(is_na)
        .then(pl.lit(NOT_APPLICABLE))
        .when(undetermined)
        .then(pl.lit(INSUFFICIENT_DATA))
        .otherwise(category)
        .alias(category_col),
        pl.when(ok)
        .then(pl.col(t["flags"]))
        .otherwise(0)
        .cast(pl.UInt64)
        .replace_strict(flag_old, flag_new, return_dtype=pl.String)
        .alias(flags_col),
        reason_key.replace_strict(reason_old, reason_new, return_dtype=pl.String).alias(reasons_col),
    )
    return _Compiled(tuple(stage.kept), stage1, stage2)


def evaluate(frame: pl.DataFrame, models: Sequence[Model], keep: Sequence[str] = ()) -> pl.DataFrame:
    """Run `models` over a frame of typed input columns (see `medloop.clinical.inputs`). Returns the
    `keep` columns followed by score, category, flags and reasons of each model.

    Every required input of every model must be a column; optional inputs that are absent count as
    unknown for every row."""
    absent = sorted({f for m in models for f in m.required if f not in frame.columns})
    if absent:
        raise ValueError(f"frame lacks required input columns: {', '.join(absent)}")
    used = list(dict.fromkeys(f for m in models for f in m.inputs))
    compiled = [_compile(m) for m in models]
    lazy = frame.lazy().with_columns(
        pl.lit(None, dtype=FIELDS[f].dtype).alias(f) for f in used if f not in frame.columns
    )
    lazy = lazy.with_columns(
        _bits([(_FIELD_BIT[f], invalid(f)) for f in used]).alias(_BAD),
        _bits([(_FIELD_BIT[f], pl.col(f).is_null()) for f in used]).alias(_NULL),
    )
    for depth in range(max(len(c.kept) for c in compiled)):
        lazy = lazy.with_columns(c.kept[depth] for c in compiled if depth < len(c.kept))
    return (
        lazy.with_columns(e for c in compiled for e in c.stage1)
        .select(*keep, *(e for c in compiled for e in c.stage2))
        .collect()
    )


def split_codes(value: str | None) -> list[str]:
    """The codes of one flags or reasons cell."""
    return value.split(SEPARATOR) if value else []
