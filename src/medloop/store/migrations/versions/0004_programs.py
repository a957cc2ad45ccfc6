"""programs: enrolments, events, tasks, time points, referrals, MDT cases, KPI values

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import medloop.store.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TABLES = (
    "kpi_value",
    "programme_enrolment",
    "programme_event",
    "programme_task",
    "programme_timepoint",
    "mdt_case",
    "programme_referral",
    "mdt_participant",
)


def upgrade() -> None:
    op.create_table(
        "kpi_value",
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("unit", sa.String(length=40), nullable=False),
        sa.Column("programme", sa.String(length=40), nullable=False),
        sa.Column("indicator", sa.String(length=60), nullable=False),
        sa.Column("numerator", sa.Float(), nullable=True),
        sa.Column("denominator", sa.Float(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("refreshed_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "period", "level", "unit", "programme", "indicator", name=op.f("pk_kpi_value")
        ),
    )
    op.create_table(
        "programme_enrolment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("programme", sa.String(length=40), nullable=False),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=64), nullable=True),
        sa.Column("facility_id", sa.Uuid(), nullable=False),
        sa.Column("practitioner_id", sa.Uuid(), nullable=True),
        sa.Column("enrolled_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("enrolled_by", sa.String(length=80), nullable=False),
        sa.Column("ended_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=40), nullable=True),
        sa.Column("seed", JSON, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("next_due_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_timer_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_visit_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("risk_score", sa.Float(), nullable=True),
        sa.Column("updated_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["organisation.id"], name=op.f("fk_programme_enrolment_facility_id_organisation")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_programme_enrolment_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioner.id"],
            name=op.f("fk_programme_enrolment_practitioner_id_practitioner"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_enrolment")),
    )
    op.create_index(
        "ix_programme_enrolment_next_timer_at", "programme_enrolment", ["next_timer_at"], unique=False
    )
    op.create_index(
        op.f("ix_programme_enrolment_patient_id"), "programme_enrolment", ["patient_id"], unique=False
    )
    op.create_index(
        op.f("ix_programme_enrolment_practitioner_id"),
        "programme_enrolment",
        ["practitioner_id"],
        unique=False,
    )
    op.create_index(
        "ix_programme_enrolment_programme_status",
        "programme_enrolment",
        ["programme", "status"],
        unique=False,
    )
    op.create_index(
        "ix_programme_enrolment_worklist",
        "programme_enrolment",
        ["facility_id", "status", "next_due_at"],
        unique=False,
    )
    op.create_index(
        "uq_programme_enrolment_active",
        "programme_enrolment",
        ["patient_id", "programme"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "programme_event",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("enrolment_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("effective_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("facility_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("sbp", sa.Float(), nullable=True),
        sa.Column("dbp", sa.Float(), nullable=True),
        sa.Column("hba1c_pct", sa.Float(), nullable=True),
        sa.Column("ldl_mmol", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["programme_enrolment.id"],
            name=op.f("fk_programme_event_enrolment_id_programme_enrolment"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_event")),
    )
    op.create_index(
        "ix_programme_event_kind_effective", "programme_event", ["kind", "effective_at"], unique=False
    )
    op.create_index(
        "ix_programme_event_patient_effective",
        "programme_event",
        ["patient_id", "effective_at"],
        unique=False,
    )
    op.create_index(
        "ix_programme_event_pending",
        "programme_event",
        ["patient_id"],
        unique=False,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "programme_task",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("enrolment_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("programme", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("due_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("facility_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=80), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("updated_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["programme_enrolment.id"],
            name=op.f("fk_programme_task_enrolment_id_programme_enrolment"),
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["organisation.id"], name=op.f("fk_programme_task_facility_id_organisation")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_programme_task_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_task")),
        sa.UniqueConstraint("enrolment_id", "ref", name=op.f("uq_programme_task_enrolment_id_ref")),
    )
    op.create_index(
        "ix_programme_task_facility_status_due",
        "programme_task",
        ["facility_id", "status", "due_at"],
        unique=False,
    )
    op.create_index(op.f("ix_programme_task_patient_id"), "programme_task", ["patient_id"], unique=False)
    op.create_table(
        "programme_timepoint",
        sa.Column("enrolment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("programme", sa.String(length=40), nullable=False),
        sa.Column("at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["programme_enrolment.id"],
            name=op.f("fk_programme_timepoint_enrolment_id_programme_enrolment"),
        ),
        sa.PrimaryKeyConstraint("enrolment_id", "name", name=op.f("pk_programme_timepoint")),
    )
    op.create_index(
        "ix_programme_timepoint_programme_name_at",
        "programme_timepoint",
        ["programme", "name", "at"],
        unique=False,
    )
    op.create_table(
        "mdt_case",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("enrolment_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("programme", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("case_data", JSON, nullable=False),
        sa.Column("scheduled_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recommendation", sa.String(length=40), nullable=True),
        sa.Column("recommendation_note", sa.String(length=1000), nullable=True),
        sa.Column("recommended_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recommended_by", sa.String(length=80), nullable=True),
        sa.Column("created_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["programme_enrolment.id"],
            name=op.f("fk_mdt_case_enrolment_id_programme_enrolment"),
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["organisation.id"], name=op.f("fk_mdt_case_host_id_organisation")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], name=op.f("fk_mdt_case_patient_id_patient")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["programme_task.id"], name=op.f("fk_mdt_case_task_id_programme_task")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mdt_case")),
        sa.UniqueConstraint("task_id", name=op.f("uq_mdt_case_task_id")),
    )
    op.create_index(op.f("ix_mdt_case_enrolment_id"), "mdt_case", ["enrolment_id"], unique=False)
    op.create_index(op.f("ix_mdt_case_host_id"), "mdt_case", ["host_id"], unique=False)
    op.create_index(op.f("ix_mdt_case_patient_id"), "mdt_case", ["patient_id"], unique=False)
    op.create_table(
        "programme_referral",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("enrolment_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("programme", sa.String(length=40), nullable=False),
        sa.Column("task_key", sa.String(length=40), nullable=False),
        sa.Column("capability", sa.String(length=40), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("requester_id", sa.Uuid(), nullable=False),
        sa.Column("performer_id", sa.Uuid(), nullable=True),
        sa.Column("distance_km", sa.Float(), nullable=True),
        sa.Column("authored_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", medloop.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome_note", sa.String(length=500), nullable=True),
        sa.Column("updated_at", medloop.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["programme_enrolment.id"],
            name=op.f("fk_programme_referral_enrolment_id_programme_enrolment"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_programme_referral_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["performer_id"],
            ["organisation.id"],
            name=op.f("fk_programme_referral_performer_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["organisation.id"],
            name=op.f("fk_programme_referral_requester_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["programme_task.id"], name=op.f("fk_programme_referral_task_id_programme_task")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_referral")),
        sa.UniqueConstraint("task_id", name=op.f("uq_programme_referral_task_id")),
    )
    op.create_index(
        op.f("ix_programme_referral_enrolment_id"), "programme_referral", ["enrolment_id"], unique=False
    )
    op.create_index(
        op.f("ix_programme_referral_patient_id"), "programme_referral", ["patient_id"], unique=False
    )
    op.create_index(
        "ix_programme_referral_performer_status",
        "programme_referral",
        ["performer_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_programme_referral_requester_authored",
        "programme_referral",
        ["requester_id", "authored_at"],
        unique=False,
    )
    op.create_table(
        "mdt_participant",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("facility_id", sa.Uuid(), nullable=False),
        sa.Column("practitioner_id", sa.Uuid(), nullable=True),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["mdt_case.id"], name=op.f("fk_mdt_participant_case_id_mdt_case"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["organisation.id"], name=op.f("fk_mdt_participant_facility_id_organisation")
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioner.id"],
            name=op.f("fk_mdt_participant_practitioner_id_practitioner"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mdt_participant")),
        sa.UniqueConstraint(
            "case_id",
            "facility_id",
            "role",
            "practitioner_id",
            name=op.f("uq_mdt_participant_case_id_facility_id_role_practitioner_id"),
        ),
    )
    op.create_index(op.f("ix_mdt_participant_case_id"), "mdt_participant", ["case_id"], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
