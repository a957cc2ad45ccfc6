"""fhir: stored resources without a medloop table, their search tokens, bulk jobs, reading panel index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medloop.store.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "fhir_resource",
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("date", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_fhir_resource_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("resource_type", "id", name=op.f("pk_fhir_resource")),
    )
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_resource_type_patient_date", ["resource_type", "patient_id", "date"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_resource_type_updated", ["resource_type", "last_updated"], unique=False
        )

    op.create_table(
        "fhir_token",
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("param", sa.String(length=40), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint(
            "resource_type", "resource_id", "param", "system", "code", name=op.f("pk_fhir_token")
        ),
    )
    with op.batch_alter_table("fhir_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_token_type_param_code", ["resource_type", "param", "code"], unique=False
        )

    op.create_table(
        "fhir_bulk_job",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("progress", sa.String(length=200), nullable=False),
        sa.Column("request_url", sa.String(length=1000), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("manifest", JSON, nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_bulk_job")),
    )
    with op.batch_alter_table("reading", schema=None) as batch_op:
        batch_op.create_index("ix_reading_panel_id", ["panel_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reading", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_panel_id")
    op.drop_table("fhir_bulk_job")
    with op.batch_alter_table("fhir_token", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_token_type_param_code")
    op.drop_table("fhir_token")
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resource_type_updated")
        batch_op.drop_index("ix_fhir_resource_type_patient_date")
    op.drop_table("fhir_resource")
