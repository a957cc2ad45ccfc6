"""SQL pieces that differ between SQLite and PostgreSQL, written once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Connection, Table, func, literal_column
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

T = TypeVar("T")
CHUNK = 1000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table(model: Any) -> Table:
    """A mapped class's table, typed as one."""
    return cast(Table, model.__table__)


def dialect_insert(conn: Connection, table: Table) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> None:
    """Insert rows; where the key exists, overwrite every other column given."""
    if not rows:
        return
    key_cols = list(keys)
    stmt = dialect_insert(conn, table)
    updates = {c: getattr(stmt.excluded, c) for c in rows[0] if c not in key_cols}
    stmt = stmt.on_conflict_do_update(index_elements=key_cols, set_=updates)
    for part in chunks(rows):
        conn.execute(stmt, list(part))


def seconds_between(conn: Connection, start: Any, end: Any) -> ColumnElement[float]:
    """end − start in seconds, for timestamp columns."""
    if conn.dialect.name == "postgresql":
        return cast(ColumnElement[float], func.extract("epoch", end - start))
    return cast(
        ColumnElement[float], (func.julianday(end) - func.julianday(start)) * literal_column("86400.0")
    )
