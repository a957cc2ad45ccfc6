"""Stored screening results: one risk assessment per person per model per run. Programmes enrol
from these (e.g. China-PAR "high" → hypertension/ASCVD follow-up)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from medloop.store.base import Base, new_id, utcnow


class RiskAssessment(Base):
    __tablename__ = "risk_assessment"
    __table_args__ = (
        Index("ix_risk_assessment_patient_model_at", "patient_id", "model", "assessed_at"),
        Index("ix_risk_assessment_model_category", "model", "category"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"))
    model: Mapped[str] = mapped_column(String(40))
    model_version: Mapped[str] = mapped_column(String(40))
    score: Mapped[float | None]
    category: Mapped[str] = mapped_column(String(40))  # a model category, or error / not_applicable / ...
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    assessed_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str | None] = mapped_column(String(120), index=True)  # e.g. a campaign id
