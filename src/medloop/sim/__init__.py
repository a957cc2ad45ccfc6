"""Synthetic data: a region (facilities and residents, `region`, `population`, `writer`) and
connected devices (`devices`). Nothing here is any real person's data."""
