"""Patients, practitioners, identifiers and consent."""
