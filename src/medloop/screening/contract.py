"""The population input contract: the columns a screening input table may carry, their types and
units. The region simulator writes exactly `COLUMNS`; `medloop screen` reads them. A missing
column disables only the models that need it; a missing value gives that row "insufficient data".

The clinical columns are defined with the models that use them (`medloop.clinical.inputs`); a table
may also carry the encounter inputs listed there (HEART, Lung-RADS, OGTT, ...) and the optional
`latitude`/`longitude` of the person, used to route referrals to the nearest facility."""

from __future__ import annotations

from medloop.clinical.inputs import ENCOUNTER_FIELDS, POPULATION_FIELDS, Field, Kind

Column = Field

KEY = "person_id"

COLUMNS: tuple[Column, ...] = (
    Column(KEY, "str", None, "Key of the person; copied to every output row."),
    *POPULATION_FIELDS,
)

PATIENT_KEY = Column(
    "patient_id",
    "str",
    None,
    "medloop patient id, in place of person_id when the "
    "population is the database's (results can then be stored as risk assessments).",
)

ROUTING: tuple[Column, ...] = (
    Column("latitude", "float", "deg", "Where the person lives (WGS 84), for routing referrals."),
    Column("longitude", "float", "deg", "Where the person lives (WGS 84), for routing referrals."),
)

BY_NAME = {c.name: c for c in (*COLUMNS, PATIENT_KEY, *ENCOUNTER_FIELDS, *ROUTING)}
"""Every column `medloop screen` understands."""

NAMES = tuple(c.name for c in COLUMNS)

__all__ = ["BY_NAME", "COLUMNS", "KEY", "NAMES", "PATIENT_KEY", "ROUTING", "Column", "Kind"]
