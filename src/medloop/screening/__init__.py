"""Population screening: one vectorised implementation per model, a local and a Dask runner."""
