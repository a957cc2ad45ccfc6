"""Clinical knowledge without I/O: codes, units, plausibility, classification, risk models."""
