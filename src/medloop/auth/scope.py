"""Facility scope, enforced in the query layer: every query for patient data goes through
`patient_in_scope` (or `scoped_patients`), so no endpoint can forget it.

A user sees the patients of their organisations and of every organisation below them: patients
whose home facility is in scope, or who hold a medical record number issued by one."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    SQLColumnExpression,
    exists,
    literal,
    or_,
    select,
    union,
)
from sqlalchemy.orm import Session, aliased

from medloop.auth.principal import Principal
from medloop.network.models import Organisation
from medloop.people.models import Patient, PatientIdentifier
from medloop.store.expressions import among


def descendants(session: Session, roots: Iterable[uuid.UUID]) -> frozenset[uuid.UUID]:
    """The organisations given and all organisations below them (recursive CTE)."""
    root_ids = list(roots)
    if not root_ids:
        return frozenset()
    tree = select(Organisation.id).where(Organisation.id.in_(root_ids)).cte("tree", recursive=True)
    tree = tree.union(select(Organisation.id).where(Organisation.parent_id == tree.c.id))
    return frozenset(session.scalars(select(tree.c.id)).all())


def patient_in_scope(principal: Principal, patient_id: SQLColumnExpression[uuid.UUID]) -> ColumnElement[bool]:
    """A boolean SQL condition: the patient behind `patient_id` is in the principal's scope.

    Written as two correlated EXISTS over aliases of `patient` and `patient_identifier`, so the
    database answers it with primary-key and index lookups for the rows the outer query already
    selects (a page of a worklist costs a few lookups, whatever the size of the scope), with the
    scope's facilities bound as one array parameter (`store.expressions.among`). The aliases
    keep the subqueries from being correlated with the outer query's own `patient` or
    `patient_identifier` (which would silently change the rule)."""
    if principal.scope is None:
        return literal(True)
    scope = principal.scope
    home = aliased(Patient, name="scope_home")
    mrn = aliased(PatientIdentifier, name="scope_mrn")
    return or_(
        exists(select(literal(1)).where(home.id == patient_id, among(home.home_facility_id, scope))),
        exists(select(literal(1)).where(mrn.patient_id == patient_id, among(mrn.organisation_id, scope))),
    )


def scope_patient_ids(scope: frozenset[uuid.UUID]) -> CompoundSelect[tuple[uuid.UUID]]:
    """The ids of the patients the scope rule can admit, found from the scope's side: those whose
    home facility is in `scope` and those holding an MRN issued by one. For a small scope this is
    a few index ranges, cheaper than checking every row of a region-wide table one by one."""
    return union(
        select(Patient.id).where(among(Patient.home_facility_id, scope)),
        select(PatientIdentifier.patient_id).where(among(PatientIdentifier.organisation_id, scope)),
    )


def scoped_patients(principal: Principal) -> Select[Patient]:
    """SELECT of the patients the principal may see."""
    return select(Patient).where(patient_in_scope(principal, Patient.id))


def for_reads(session: Session, principal: Principal) -> Principal:
    """The principal, unrestricted when its scope holds every organisation: every patient has a
    home facility, so `patient_in_scope` admits every patient, and a region-wide reader's queries
    need not check it once per row (one indexed look for an organisation outside the scope).
    The same rows either way; audit records do not depend on the scope (who, purpose, source)."""
    if principal.scope is None:
        return principal
    outside = session.scalar(select(Organisation.id).where(~among(Organisation.id, principal.scope)).limit(1))
    return principal if outside is not None else replace(principal, scope=None)
