"""SQL pieces that differ between SQLite and PostgreSQL, written once."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Connection, MetaData, Table, bindparam, func, literal_column, update

from medloop.store.bulk import copy_rows, dialect_insert

T = TypeVar("T")
CHUNK = 1000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table(model: Any) -> Table:
    """A mapped class's table, typed as one."""
    return cast(Table, model.__table__)


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> None:
    """Insert rows; where the key exists, overwrite every other column given."""
    _insert_on_conflict(conn, table, rows, list(keys), update=True)


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]
) -> None:
    """Insert rows whose key is new; the others are skipped."""
    _insert_on_conflict(conn, table, rows, list(keys), update=False)


def _insert_on_conflict(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_cols: list[str], *, update: bool
) -> None:
    """Insert rows; where the key exists, overwrite the other columns given (`update`) or skip."""
    if not rows:
        return
    columns = list(rows[0])
    others = [c for c in columns if c not in key_cols]
    if _staged(conn, rows):
        stage = _stage(conn, table, columns, rows)
        action = (
            "DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in others)
            if update
            else "DO NOTHING"
        )
        conn.exec_driver_sql(
            f'INSERT INTO "{table.name}" ({_cols(columns)}) SELECT {_cols(columns)} FROM "{stage}" '
            f"ON CONFLICT ({_cols(key_cols)}) {action}"
        )
        return
    stmt = dialect_insert(conn, table)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=key_cols, set_={c: getattr(stmt.excluded, c) for c in others}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key_cols)
    for part in chunks(rows):
        conn.execute(stmt, list(part))


def update_by_key(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: str = "id") -> None:
    """Update each row (a dict with the key and the columns to set) where the key matches."""
    if not rows:
        return
    columns = list(rows[0])
    if _staged(conn, rows):
        stage = _stage(conn, table, columns, rows)
        sets = ", ".join(f'"{c}" = s."{c}"' for c in columns if c != key)
        conn.exec_driver_sql(
            f'UPDATE "{table.name}" t SET {sets} FROM "{stage}" s WHERE t."{key}" = s."{key}"'
        )
        return
    stmt = (
        update(table)
        .where(table.c[key] == bindparam("k_" + key))
        .values({c: bindparam("v_" + c) for c in columns if c != key})
    )
    for part in chunks(rows):
        conn.execute(stmt, [{("k_" if c == key else "v_") + c: v for c, v in r.items()} for r in part])


# On PostgreSQL, batches of at least this many rows go through COPY into a temporary table and one
# set-based statement from there (an order of magnitude faster than a pipelined executemany).
STAGE_FROM = 200


def _staged(conn: Connection, rows: Sequence[dict[str, Any]]) -> bool:
    return conn.dialect.name == "postgresql" and len(rows) >= STAGE_FROM


def _cols(columns: Iterable[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _stage(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """Copy rows into a temporary table of the given columns (dropped at commit); returns its name."""
    name = f"stage_{table.name}_{zlib.crc32(','.join(columns).encode()):08x}"
    conn.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{name}" ON COMMIT DROP AS '
        f'SELECT {_cols(columns)} FROM "{table.name}" WITH NO DATA'
    )
    conn.exec_driver_sql(f'TRUNCATE "{name}"')
    copy_rows(conn, Table(name, MetaData()), columns, ([r[c] for c in columns] for r in rows))
    return name


def seconds_between(conn: Connection, start: Any, end: Any) -> ColumnElement[float]:
    """end − start in seconds, for timestamp columns."""
    if conn.dialect.name == "postgresql":
        return cast(ColumnElement[float], func.extract("epoch", end - start))
    return cast(
        ColumnElement[float], (func.julianday(end) - func.julianday(start)) * literal_column("86400.0")
    )
