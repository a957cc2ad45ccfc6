"""Facility scope, enforced in the query layer: every query for patient data goes through
`patient_in_scope` (or `scoped_patients`), so no endpoint can forget it.

A user sees the patients of their organisations and of every organisation below them: patients
whose home facility is in scope, or who hold a medical record number issued by one."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, literal, or_, select
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.network.models import Organisation
from medloop.people.models import Patient, PatientIdentifier


def descendants(session: Session, roots: Iterable[uuid.UUID]) -> frozenset[uuid.UUID]:
    """The organisations given and all organisations below them (recursive CTE)."""
    root_ids = list(roots)
    if not root_ids:
        return frozenset()
    tree = select(Organisation.id).where(Organisation.id.in_(root_ids)).cte("tree", recursive=True)
    tree = tree.union(select(Organisation.id).where(Organisation.parent_id == tree.c.id))
    return frozenset(session.scalars(select(tree.c.id)).all())


def patient_in_scope(principal: Principal, patient_id: SQLColumnExpression[uuid.UUID]) -> ColumnElement[bool]:
    """A boolean SQL condition: the patient behind `patient_id` is in the principal's scope."""
    if principal.scope is None:
        return literal(True)
    scope = list(principal.scope)
    return or_(
        patient_id.in_(select(Patient.id).where(Patient.home_facility_id.in_(scope))),
        patient_id.in_(
            select(PatientIdentifier.patient_id).where(PatientIdentifier.organisation_id.in_(scope))
        ),
    )


def scoped_patients(principal: Principal) -> Select[Patient]:
    """SELECT of the patients the principal may see."""
    return select(Patient).where(patient_in_scope(principal, Patient.id))
