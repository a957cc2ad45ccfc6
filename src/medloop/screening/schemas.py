"""Request and response bodies of the screening API."""

from __future__ import annotations

from pydantic import BaseModel


class Range(BaseModel):
    min: float | None = None
    max: float | None = None


class InputSpec(BaseModel):
    name: str
    type: str  # str, int, float, bool, enum
    unit: str | None
    description: str
    values: list[str] | None  # allowed values of an enum
    required: bool  # a table without this column cannot run the model
    plausible: Range | None  # data-quality limits: outside → category "error"
    valid: Range | None  # the model's valid range: outside → "not_applicable"


class ModelInfo(BaseModel):
    name: str
    title: str
    version: str
    source: str
    confirmed: bool  # every number checked against the primary source
    categories: list[str]
    population: bool  # run by `medloop screen` by default
    inputs: list[InputSpec]


class ScoreResult(BaseModel):
    model: str
    model_version: str
    score: float | None
    category: str  # a model category, or error / not_applicable / insufficient_data
    flags: list[str]
    reasons: list[str]
