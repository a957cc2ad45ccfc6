"""Every read or write of a patient's data leaves an audit record; the trail is append-only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from medloop.auth.models import AuditEvent
from tests.factories import World, auth


def _events(engine: Engine) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all())


def test_read_is_audited_with_who_what_where_why(client: TestClient, engine: Engine, world: World) -> None:
    alice = world.patients["alice"]
    headers = auth(client, "doc-a1") | {"X-Purpose-Of-Use": "operations"}
    assert client.get(f"/api/v1/patients/{alice.id}", headers=headers).status_code == 200
    [event] = _events(engine)
    assert (
        event.actor,
        event.action,
        event.resource_type,
        event.patient_id,
        event.purpose,
        event.outcome,
    ) == ("doc-a1", "read", "Patient", alice.id, "operations", "success")
    assert event.source == "testclient"
    assert event.at.tzinfo is not None


def test_search_audits_each_patient_returned(client: TestClient, engine: Engine, world: World) -> None:
    client.get("/api/v1/patients", headers=auth(client, "doc-cnty-a"))
    events = _events(engine)
    assert {e.patient_id for e in events} == {world.patients["alice"].id, world.patients["bob"].id}
    assert {e.action for e in events} == {"search"}


def test_create_and_update_are_audited(client: TestClient, engine: Engine, world: World) -> None:
    headers = auth(client, "doc-a1")
    body = {
        "family_name": "李",
        "given_name": "强",
        "sex": "M",
        "birth_date": "1955-01-20",
        "province_code": "330000",
        "city_code": "330100",
        "district_code": "330122",
        "home_facility_id": str(world.org_id("CHC-A1")),
    }
    created = client.post("/api/v1/patients", headers=headers, json=body).json()
    client.patch(f"/api/v1/patients/{created['id']}", headers=headers, json={"phone": "13900000000"})
    events = _events(engine)
    assert [(e.action, str(e.patient_id)) for e in events] == [
        ("create", created["id"]),
        ("update", created["id"]),
    ]
    assert events[1].detail == {"fields": ["phone"]}


def test_denied_read_leaves_no_data_and_no_success_record(
    client: TestClient, engine: Engine, world: World
) -> None:
    r = client.get(f"/api/v1/patients/{world.patients['carol'].id}", headers=auth(client, "doc-a1"))
    assert r.status_code == 404
    assert "carol" not in r.text
    assert [e for e in _events(engine) if e.outcome == "success"] == []


def test_unknown_purpose_is_refused(client: TestClient, world: World) -> None:
    headers = auth(client, "doc-a1") | {"X-Purpose-Of-Use": "curiosity"}
    r = client.get(f"/api/v1/patients/{world.patients['alice'].id}", headers=headers)
    assert r.status_code == 400 and "purpose" in r.json()["detail"]


def test_admin_reads_the_trail(client: TestClient, world: World) -> None:
    client.get(f"/api/v1/patients/{world.patients['alice'].id}", headers=auth(client, "doc-a1"))
    r = client.get(
        "/api/v1/audit", params={"patient_id": str(world.patients["alice"].id)}, headers=auth(client, "admin")
    )
    assert r.status_code == 200
    assert [(e["actor"], e["action"]) for e in r.json()["items"]] == [("doc-a1", "read")]


@pytest.mark.parametrize("statement", ["UPDATE audit_event SET actor = 'x'", "DELETE FROM audit_event"])
def test_database_refuses_changes_to_the_trail(
    client: TestClient, engine: Engine, world: World, statement: str
) -> None:
    client.get(f"/api/v1/patients/{world.patients['alice'].id}", headers=auth(client, "doc-a1"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_orm_refuses_changes_to_the_trail(client: TestClient, engine: Engine, world: World) -> None:
    client.get(f"/api/v1/patients/{world.patients['alice'].id}", headers=auth(client, "doc-a1"))
    with Session(engine) as s:
        event = s.scalars(select(AuditEvent)).one()
        event.actor = "someone else"
        with pytest.raises(PermissionError):
            s.flush()
