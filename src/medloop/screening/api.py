"""/api/v1/screening: the risk models, one person at a time. Any authenticated user may score;
nothing is stored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from medloop.auth.deps import CurrentPrincipal
from medloop.clinical.catalogue import MODELS
from medloop.screening.person import describe, score_person
from medloop.screening.schemas import ModelInfo, ScoreResult

router = APIRouter(prefix="/api/v1/screening", tags=["screening"])


@router.get("", response_model=list[ModelInfo])
def list_models(_principal: CurrentPrincipal) -> list[ModelInfo]:
    """Every model with its version, source, confirmed status, categories and inputs."""
    return [ModelInfo.model_validate(describe(m)) for m in MODELS.values()]


@router.post("/{model}", response_model=ScoreResult)
def score(model: str, _principal: CurrentPrincipal, inputs: dict[str, Any] = Body(...)) -> ScoreResult:
    """Score one person: the body maps input names to values (see GET /api/v1/screening)."""
    return ScoreResult.model_validate(score_person(model, inputs))
