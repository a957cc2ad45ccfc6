"""fhir search: reading index on (effective_at, code) for searches by date, code + date and _sort=date

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 20:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reading", schema=None) as batch_op:
        batch_op.create_index("ix_reading_effective_code", ["effective_at", "code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reading", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_effective_code")
