"""Indexes the dashboards' reads need on other domains' tables (migration 0006). Declared here so
that `Base.metadata` matches the migrations (`medloop.store.registry` imports this module)."""

from __future__ import annotations

from sqlalchemy import Index, text

from medloop.devices.models import AlertStatus, DeviceAlert, Reading
from medloop.programs.models import MdtCase

OPEN_ONLY = text(f"status = '{AlertStatus.OPEN.value}'")

# The device fleet reads the last hour of readings by the time they were received.
Index("ix_reading_received_at", Reading.__table__.c.received_at)
# The MDT board lists open and scheduled cases, oldest first.
Index("ix_mdt_case_status_created", MdtCase.__table__.c.status, MdtCase.__table__.c.created_at)
# A facility's open alerts: from its patients to their open alerts (a few of the region's).
Index(
    "ix_device_alert_open_patient",
    DeviceAlert.__table__.c.patient_id,
    DeviceAlert.__table__.c.created_at,
    postgresql_where=OPEN_ONLY,
    sqlite_where=OPEN_ONLY,
)
