"""Synthetic data: a region (facilities and residents, `region`, `population`, `writer`) and
connected devices (`devices`). Nothing here is any real person's data."""

from datetime import date

# Defaults shared by the simulator and its CLI (here so the CLI can show them without importing
# NumPy/Polars before a command runs).
DEFAULT_AS_OF = date(2025, 6, 30)
DEFAULT_CHUNK_ROWS = 100_000
