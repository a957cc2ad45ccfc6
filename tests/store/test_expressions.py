"""`among(column, ids)` selects exactly what `column.in_(ids)` selects, on SQLite and PostgreSQL,
with the set bound as one parameter whatever its size."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from medloop.network.models import Organisation
from medloop.store.expressions import among

CODES = [f"EX-{i:03d}" for i in range(40)]


@pytest.fixture
def org_ids(engine: Engine) -> dict[str, uuid.UUID]:
    with Session(engine) as session:
        orgs = [
            Organisation(
                code=code,
                name=code,
                tier="primary",
                province_code="370000",
                city_code="379900",
                district_code="379901",
                latitude=36.0,
                longitude=117.0,
            )
            for code in CODES
        ]
        session.add_all(orgs)
        session.commit()
        return {o.code: o.id for o in orgs}


@pytest.mark.parametrize(
    "picked",
    [[], [0], [0, 39], list(range(0, 40, 3)), list(range(40))],
    ids=["none", "one", "two", "every-third", "all"],
)
def test_among_selects_what_in_selects(
    engine: Engine, org_ids: dict[str, uuid.UUID], picked: list[int]
) -> None:
    ids = [org_ids[CODES[i]] for i in picked] + [uuid.uuid4()]  # plus one that matches nothing
    with Session(engine) as session:
        got = session.scalars(select(Organisation.code).where(among(Organisation.id, ids))).all()
        expected = session.scalars(select(Organisation.code).where(Organisation.id.in_(ids))).all()
    assert sorted(got) == sorted(expected) == [CODES[i] for i in picked]


def test_among_binds_the_set_as_one_parameter(engine: Engine) -> None:
    ids = [uuid.uuid4() for _ in range(1500)]
    stmt = select(Organisation.id).where(among(Organisation.id, ids))
    compiled = stmt.compile(dialect=engine.dialect)
    assert len(compiled.params) == 1
    with Session(engine) as session:
        assert session.scalars(stmt).all() == []
