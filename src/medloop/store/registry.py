"""Imports every domain's models so that `Base.metadata` is complete (for Alembic and tests).
A new domain adds its models module here."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from medloop.store.base import Base

MODEL_MODULES = (
    "medloop.network.models",
    "medloop.people.models",
    "medloop.auth.models",
    "medloop.devices.models",
    "medloop.screening.models",
    "medloop.fhir.models",
    "medloop.programs.models",
    "medloop.web.models",
)


def load_all_models() -> MetaData:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata
