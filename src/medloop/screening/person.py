"""One person through one model: the JSON inputs become a one-row frame and go through exactly the
code that screens populations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from medloop.clinical.catalogue import MODELS
from medloop.clinical.inputs import FIELDS, limits
from medloop.clinical.scoring import Model, evaluate, split_codes
from medloop.errors import NotFound
from medloop.screening.frames import InputError, normalise


def get_model(name: str) -> Model:
    model = MODELS.get(name)
    if model is None:
        raise NotFound(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return model


def score_person(name: str, inputs: Any) -> dict[str, Any]:
    """Score one person: `inputs` maps input names to values (JSON types); inputs of other models
    are accepted and ignored, so one record can go to every model. Unknown models are NotFound; a
    body that is not an object, names that are no model's input and values of the wrong type are
    InputError (422). Missing or implausible values are part of the result, not errors."""
    model = get_model(name)
    if not isinstance(inputs, Mapping):
        raise InputError("the body must be a JSON object of model inputs")
    unknown = sorted(str(k) for k in inputs if k not in FIELDS)
    if unknown:
        raise InputError(
            f"unknown input(s): {', '.join(unknown)}; the inputs of {name} are {', '.join(model.inputs)}"
        )
    used = [f for f in model.inputs if f in inputs]
    raw = pl.DataFrame([pl.Series(f, [inputs[f]], strict=False) for f in used])
    frame = normalise(raw, used, "the request").with_columns(
        pl.lit(None, dtype=FIELDS[f].dtype).alias(f) for f in model.inputs if f not in inputs
    )
    score, category, flags, reasons = evaluate(frame, [model]).row(0)
    return {
        "model": model.name,
        "model_version": model.version,
        "score": score,
        "category": category,
        "flags": split_codes(flags),
        "reasons": split_codes(reasons),
    }


def describe(model: Model) -> dict[str, Any]:
    """A model's version, source, confirmed status, categories and inputs (types, units, allowed
    values, data-quality limits, valid ranges)."""
    lim = limits()
    return {
        "name": model.name,
        "title": model.title,
        "version": model.version,
        "source": model.source,
        "confirmed": model.confirmed,
        "categories": list(model.categories),
        "population": model.population,
        "inputs": [
            {
                "name": f,
                "type": FIELDS[f].kind,
                "unit": FIELDS[f].unit,
                "description": FIELDS[f].description,
                "values": list(FIELDS[f].values) or None,
                "required": f in model.required,
                "plausible": {"min": lim[f].min, "max": lim[f].max} if f in lim else None,
                "valid": dict(model.valid[f]) if f in model.valid else None,
            }
            for f in model.inputs
        ],
    }
