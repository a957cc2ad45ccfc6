from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.factories import World, make_client, standard_world


@pytest.fixture
def world(engine: Engine) -> World:
    with Session(engine, expire_on_commit=False) as s:
        return standard_world(s)


@pytest.fixture
def client(engine: Engine, world: World) -> Iterator[TestClient]:
    with make_client(engine) as c:
        yield c
