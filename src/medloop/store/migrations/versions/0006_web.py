"""web: indexes of the dashboards' reads (readings by received time, MDT cases by status, open alerts
by patient)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reading", schema=None) as batch_op:
        batch_op.create_index("ix_reading_received_at", ["received_at"], unique=False)
    with op.batch_alter_table("mdt_case", schema=None) as batch_op:
        batch_op.create_index("ix_mdt_case_status_created", ["status", "created_at"], unique=False)
    with op.batch_alter_table("device_alert", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_alert_open_patient",
            ["patient_id", "created_at"],
            unique=False,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("device_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_device_alert_open_patient")
    with op.batch_alter_table("mdt_case", schema=None) as batch_op:
        batch_op.drop_index("ix_mdt_case_status_created")
    with op.batch_alter_table("reading", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_received_at")
