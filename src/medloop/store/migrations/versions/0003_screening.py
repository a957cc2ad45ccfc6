"""screening: risk assessments

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-21 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medloop.store.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_assessment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=40), nullable=False),
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("assessed_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_risk_assessment_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_assessment")),
    )
    with op.batch_alter_table("risk_assessment", schema=None) as batch_op:
        batch_op.create_index("ix_risk_assessment_model_category", ["model", "category"], unique=False)
        batch_op.create_index(
            "ix_risk_assessment_patient_model_at", ["patient_id", "model", "assessed_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_risk_assessment_source"), ["source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("risk_assessment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_assessment_source"))
        batch_op.drop_index("ix_risk_assessment_patient_model_at")
        batch_op.drop_index("ix_risk_assessment_model_category")

    op.drop_table("risk_assessment")
