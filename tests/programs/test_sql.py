"""The bulk helpers give the same result on both databases, whether a batch goes through
executemany or (PostgreSQL, large batches) through COPY into a staging table."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from medloop.programs.models import KpiValue
from medloop.programs.sql import STAGE_FROM, insert_ignore, table, update_by_key, upsert
from tests.programs.conftest import T0

KV = table(KpiValue)
KEYS = ["period", "level", "unit", "programme", "indicator"]


def _rows(n: int, value: float) -> list[dict[str, object]]:
    return [
        {
            "period": T0.date(),
            "level": "facility",
            "unit": f"U{i:05d}",
            "programme": "p",
            "indicator": "x",
            "numerator": None,
            "denominator": None,
            "value": value,
            "refreshed_at": T0,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [3, STAGE_FROM + 5])
def test_upsert_insert_ignore_update(session: Session, n: int) -> None:
    conn = session.connection()
    insert_ignore(conn, KV, _rows(n, 1.0), KEYS)
    insert_ignore(conn, KV, _rows(n + 2, 2.0), KEYS)  # only the two new keys are added
    values = session.scalars(select(KpiValue.value).order_by(KpiValue.unit)).all()
    assert values == [1.0] * n + [2.0] * 2
    upsert(conn, KV, _rows(n, 3.0), KEYS)
    assert session.scalars(select(KpiValue.value).order_by(KpiValue.unit)).all() == [3.0] * n + [2.0] * 2
    by_unit = [{"unit": f"U{i:05d}", "numerator": float(i)} for i in range(n)]
    update_by_key(conn, KV, by_unit, key="unit")
    assert session.scalars(select(KpiValue.numerator).order_by(KpiValue.unit)).all() == [
        float(i) for i in range(n)
    ] + [None, None]
