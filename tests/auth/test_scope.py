"""`auth.scope.for_reads`: a scope holding every organisation reads as unrestricted, and that
admits exactly the patients the scope rule admits; any smaller scope is left as it is."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.auth.principal import Principal
from medloop.auth.scope import descendants, for_reads, patient_in_scope, scope_patient_ids
from medloop.people.models import Patient
from tests.factories import World


def _principal(scope: frozenset[uuid.UUID]) -> Principal:
    return Principal(None, "reader", frozenset({"programme_manager"}), scope, scope)


def _visible(session: Session, principal: Principal) -> set[uuid.UUID]:
    return set(session.scalars(select(Patient.id).where(patient_in_scope(principal, Patient.id))))


def test_whole_network_scope_reads_unrestricted_with_the_same_patients(engine: Engine, world: World) -> None:
    with Session(engine) as session:
        everything = descendants(session, [world.org_id("HUB")])
        assert everything == frozenset(o.id for o in world.orgs.values())
        whole = _principal(everything)
        reader = for_reads(session, whole)
        assert reader.scope is None
        assert _visible(session, reader) == _visible(session, whole)
        assert len(_visible(session, whole)) == len(world.patients) > 0


def test_a_smaller_scope_is_kept(engine: Engine, world: World) -> None:
    with Session(engine) as session:
        county = _principal(descendants(session, [world.org_id("CNTY-A")]))
        reader = for_reads(session, county)
        assert reader is county
        assert 0 < len(_visible(session, reader)) < len(world.patients)


def test_scope_patient_ids_are_the_patients_the_rule_admits(engine: Engine, world: World) -> None:
    with Session(engine) as session:
        for root in ("CHC-A1", "CNTY-A", "CNTY-B", "HUB"):
            scope = descendants(session, [world.org_id(root)])
            from_scope = set(session.scalars(select(scope_patient_ids(scope).subquery().c[0])))
            assert from_scope == _visible(session, _principal(scope)), root
