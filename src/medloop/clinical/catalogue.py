"""Every screening risk model, by name."""

from __future__ import annotations

from medloop.clinical import (
    blood_pressure,
    cdrs,
    china_par,
    copd_sq,
    gastric,
    glycaemia,
    heart,
    lung_rads,
    lung_screening,
    psa,
)
from medloop.clinical.scoring import Model

MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        china_par.MODEL,
        cdrs.MODEL,
        copd_sq.MODEL,
        lung_screening.CHINA,
        lung_screening.USPSTF,
        blood_pressure.MODEL,
        glycaemia.MODEL,
        gastric.MODEL,
        psa.MODEL,
        heart.MODEL,
        lung_rads.MODEL,
    )
}
POPULATION_DEFAULT: tuple[str, ...] = tuple(name for name, m in MODELS.items() if m.population)
"""The models `medloop screen` runs unless told otherwise (those whose inputs a population table carries)."""
