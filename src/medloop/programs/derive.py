"""What the clinical models say about an event, computed once when it is stored.

A visit's blood pressure is graded by `medloop.clinical.blood_pressure`, glucose and HbA1c by
`medloop.clinical.glycaemia`, an LDCT nodule by `medloop.clinical.lung_rads` — the same models and
the same evaluator the population screening uses, run over a batch of events at once. The results
go into the event's payload (`<model>_category`, `<model>_flags`, `<model>_score` and the model
version under `derived_by`), so replaying an enrolment later gives the same answer even after a
model changes: the engine never classifies anything itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from medloop.clinical import blood_pressure, glycaemia, lung_rads
from medloop.clinical.inputs import FIELDS
from medloop.clinical.scoring import Model, evaluate, split_codes

Payload = dict[str, Any]


def _has(*names: str) -> Callable[[str, Mapping[str, Any]], bool]:
    return lambda _kind, p: all(p.get(n) is not None for n in names)


def _glucose(_kind: str, p: Mapping[str, Any]) -> bool:
    return any(p.get(n) is not None for n in ("fpg_mmol", "hba1c_pct", "ogtt_2h_mmol", "random_glucose_mmol"))


def _ldct(_kind: str, p: Mapping[str, Any]) -> bool:
    return p.get("test") == "ldct" and p.get("nodule_type") is not None


# Which events each model reads.
APPLIES: tuple[tuple[Model, Callable[[str, Mapping[str, Any]], bool]], ...] = (
    (blood_pressure.MODEL, _has("sbp", "dbp")),
    (glycaemia.MODEL, _glucose),
    (lung_rads.MODEL, _ldct),
)
KINDS = frozenset({"visit", "test_result"})  # office measurements (home BP has its own limits)


def _column(name: str, values: list[Any]) -> pl.Series:
    field = FIELDS[name]
    if field.kind == "bool":
        values = [v if isinstance(v, bool) else None for v in values]
    elif field.kind in ("int", "float"):
        values = [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values]
    else:
        values = [v if isinstance(v, str) else None for v in values]
    return pl.Series(name, values, dtype=field.dtype, strict=False)


def derive(kinds: Sequence[str], payloads: Sequence[Payload]) -> None:
    """Add the clinical models' results to the payloads (in place), one evaluation per model."""
    for model, applies in APPLIES:
        rows = [
            i for i, (k, p) in enumerate(zip(kinds, payloads, strict=True)) if k in KINDS and applies(k, p)
        ]
        if not rows:
            continue
        frame = pl.DataFrame([_column(f, [payloads[i].get(f) for i in rows]) for f in model.inputs])
        score_col, category_col, flags_col, _reasons = model.columns()
        results = evaluate(frame, [model])
        for i, score, category, flags in zip(
            rows,
            results.get_column(score_col).to_list(),
            results.get_column(category_col).to_list(),
            results.get_column(flags_col).to_list(),
            strict=True,
        ):
            payload = payloads[i]
            payload[category_col] = category
            payload[flags_col] = split_codes(flags)
            if score is not None:
                payload[score_col] = score
            payload.setdefault("derived_by", {})[model.name] = model.version
