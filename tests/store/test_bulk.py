"""`insert_frame` stores exactly what `bulk_insert` (SQLAlchemy's own type handling) stores, on
SQLite and PostgreSQL, and refuses values it cannot store faithfully."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Connection, Engine, Table, delete, text
from sqlalchemy.exc import IntegrityError

from medloop.network.models import Organisation
from medloop.people.models import Patient
from medloop.store.bulk import bulk_insert, insert_frame


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


ORG, PAT = _table(Organisation), _table(Patient)
NOW = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)

ORGS: list[dict[str, Any]] = [
    {
        "id": uuid.UUID(int=i + 1),
        "code": f"T-{i}",
        "name": f"Test '{i}', \"quoted\"\nline",
        "tier": "primary",
        "parent_id": None if i == 0 else uuid.UUID(int=1),
        "province_code": "370000",
        "city_code": "379900",
        "district_code": "379901",
        "latitude": 36.123456 + i / 3,
        "longitude": 117.000001 - i / 7,
        "capabilities": ["lab", "ecg"][:i],
        "timezone": "Asia/Shanghai",
        "active": i % 2 == 0,
        "created_at": NOW,
        "updated_at": NOW + timedelta(microseconds=i),
    }
    for i in range(3)
]
PATIENTS: list[dict[str, Any]] = [
    {
        "id": uuid.UUID(int=(7 << 64) + i),
        "family_name": "王",
        "given_name": ["小明", "", "𠀀"][i],
        "name": f"王{i}",
        "sex": "MF"[i % 2],
        "birth_date": date(1950 + i, 2, 28),
        "phone": None if i == 1 else f"1380000000{i}",
        "province_code": "370000",
        "city_code": "379900",
        "district_code": "379901",
        "address": None if i == 2 else "山东省,某市",
        "home_facility_id": uuid.UUID(int=1 + i % 2),
        "consent": {"data_processing": True, "sms_contact": i == 0, "research": False},
        "active": True,
        "deceased": i == 2,
        "version": i + 1,
        "created_at": NOW,
        "updated_at": NOW,
    }
    for i in range(3)
]


def _frame(table: Table, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The rows as a frame in insert_frame's input form: UUIDs and JSON as text, native dates."""
    json_columns = {"capabilities", "consent"}

    def cell(name: str, value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return str(value)
        return json.dumps(value) if name in json_columns else value

    columns = {name: [cell(name, r[name]) for r in rows] for name in rows[0]}
    schema = {name: pl.String for name in columns if name in json_columns or "id" in name.split("_")}
    return pl.DataFrame(columns, schema_overrides=schema)


def _stored(conn: Connection, table: Table) -> list[tuple[Any, ...]]:
    """The rows as the driver returns them (no SQLAlchemy result processing)."""
    return list(conn.exec_driver_sql(f'SELECT * FROM "{table.name}" ORDER BY id').fetchall())


def test_insert_frame_stores_what_bulk_insert_stores(engine: Engine) -> None:
    with engine.connect() as conn:
        bulk_insert(conn, ORG, ORGS)
        bulk_insert(conn, PAT, PATIENTS)
        expected = _stored(conn, ORG), _stored(conn, PAT)
        conn.execute(delete(PAT))
        conn.execute(text("UPDATE organisation SET parent_id = NULL"))
        conn.execute(delete(ORG))
        # Timestamps in another zone are stored as UTC, as SQLAlchemy stores them.
        shanghai = _frame(ORG, ORGS).with_columns(pl.col("created_at").dt.convert_time_zone("Asia/Shanghai"))
        assert insert_frame(conn, ORG, shanghai) == 3
        assert insert_frame(conn, PAT, _frame(PAT, PATIENTS)) == 3
        assert (_stored(conn, ORG), _stored(conn, PAT)) == expected
        assert insert_frame(conn, PAT, _frame(PAT, PATIENTS).clear()) == 0
        conn.rollback()


def test_insert_frame_refuses_what_it_cannot_store(engine: Engine) -> None:
    frame = _frame(ORG, ORGS)
    with engine.connect() as conn:
        naive = frame.with_columns(pl.col("created_at").dt.replace_time_zone(None))
        with pytest.raises(ValueError, match="timezone-aware"):
            insert_frame(conn, ORG, naive)
        with pytest.raises(TypeError, match="as text"):
            insert_frame(conn, ORG, frame.with_columns(pl.lit(1).alias("id")))
        conn.rollback()


def test_insert_frame_raises_sqlalchemys_exceptions(engine: Engine) -> None:
    frame = _frame(ORG, ORGS)
    with engine.connect() as conn:
        insert_frame(conn, ORG, frame)
        with pytest.raises(IntegrityError):
            insert_frame(conn, ORG, frame.slice(1, 1))
        conn.rollback()
