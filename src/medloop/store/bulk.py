"""The fast storage path: COPY on PostgreSQL, executemany in one transaction elsewhere.

`bulk_insert` takes plain row dicts (already validated) and writes them in batches. With
`on_conflict_ignore`, rows whose primary or unique key already exists are skipped, which is
what makes deterministic ids idempotent (a retry is a no-op).

`insert_frame` takes a Polars frame instead and never makes a Python object per row beyond the
driver's own: its columns are converted to the database's form by Polars expressions (one pass per
column), then sent as CSV into COPY on PostgreSQL, or as tuples to the driver's `executemany`
elsewhere. For large generated tables (the simulated region) it is several times faster."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Uuid,
    insert,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

if TYPE_CHECKING:  # Polars is imported by the functions that need it (command start-up stays fast)
    import polars as pl


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def copy_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """PostgreSQL COPY FROM STDIN (binary-safe text protocol via psycopg's row writer)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cols = ", ".join(f'"{c}"' for c in columns)
    n = 0
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([_copy_value(v) for v in row])
            n += 1
    return n


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The connection's dialect's INSERT, which has `on_conflict_do_nothing` / `_do_update`."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def bulk_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    on_conflict_ignore: bool = False,
    batch_size: int = 5000,
) -> int:
    """Insert rows; returns how many were written (skipped conflicts are not counted on
    PostgreSQL COPY-less paths; COPY itself is only used when conflicts cannot occur)."""
    if not rows:
        return 0
    columns = list(rows[0].keys())
    dialect = conn.dialect.name
    if dialect == "postgresql" and not on_conflict_ignore:
        return copy_rows(conn, table, columns, ([r[c] for c in columns] for r in rows))
    stmt: Any = dialect_insert(conn, table).on_conflict_do_nothing() if on_conflict_ignore else insert(table)
    written = 0
    for start in range(0, len(rows), batch_size):
        result = conn.execute(stmt, list(rows[start : start + batch_size]))
        written += result.rowcount if result.rowcount and result.rowcount > 0 else 0
    return written


# Rows per `executemany` call of `insert_frame` on SQLite: bounds the Python tuples alive at once.
_SQLITE_SLICE_ROWS = 20_000


def _storage_type(column: Column[Any]) -> TypeEngine[Any]:
    """The SQL type a column is stored as: a foreign key's type is its target's, a decorated type's
    is its implementation's."""
    kind: TypeEngine[Any] = column.type
    if isinstance(kind, NullType) and column.foreign_keys:
        kind = next(iter(column.foreign_keys)).column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    return kind


def _stored(column: Column[Any], dtype: pl.DataType, dialect: str) -> pl.Expr:
    """A frame column as the value the driver receives, the same as SQLAlchemy's bind processing
    gives for Python values: on SQLite a UUID is its 32 hex digits, a date `YYYY-MM-DD`, a
    timestamp UTC `YYYY-MM-DD HH:MM:SS.ffffff`; JSON columns are given as JSON text. Timestamps must
    carry a time zone (medloop stores timezone-aware UTC only)."""
    import polars as pl

    name = column.name
    expr = pl.col(name)
    kind = _storage_type(column)
    if isinstance(kind, JSON | Uuid) and dtype != pl.String:
        raise TypeError(f"{column.table.name}.{name}: give {type(kind).__name__} values as text, not {dtype}")
    if isinstance(kind, DateTime):
        if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
            raise ValueError(f"{column.table.name}.{name}: timezone-aware datetimes only, not {dtype}")
        utc = expr.dt.convert_time_zone("UTC")
        if dialect == "sqlite":
            return utc.dt.replace_time_zone(None).dt.to_string("%Y-%m-%d %H:%M:%S.%6f")
        return utc
    if dialect != "sqlite":
        return expr
    if isinstance(kind, Uuid):
        return expr.str.replace_all("-", "", literal=True).str.to_lowercase()
    if isinstance(kind, Date):
        if dtype != pl.Date:
            raise TypeError(f"{column.table.name}.{name}: give dates as a Date column, not {dtype}")
        return expr.dt.to_string("%Y-%m-%d")
    if isinstance(kind, String | Integer | Float | Boolean | JSON):
        return expr
    raise TypeError(f"{column.table.name}.{name}: insert_frame does not handle {type(kind).__name__} columns")


def insert_frame(conn: Connection, table: Table, frame: pl.DataFrame) -> int:
    """Insert the rows of `frame`, whose columns are named after columns of `table` (values already
    validated; no conflicts expected: a duplicate key fails the statement). Returns the row count.
    PostgreSQL: one COPY ... FORMAT csv of the frame written by Polars; SQLite: the driver's
    executemany with tuples, inside the connection's transaction."""
    if frame.is_empty():
        return 0
    dialect = conn.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"insert_frame supports PostgreSQL and SQLite, not {dialect}")
    stored = frame.select(_stored(table.c[name], dtype, dialect) for name, dtype in frame.schema.items())
    raw = conn.connection.driver_connection
    assert raw is not None
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    if dialect == "postgresql":
        statement = f'COPY "{table.name}" ({cols}) FROM STDIN (FORMAT csv)'
    else:
        statement = f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join("?" * frame.width)})'
    dbapi_error: type[Exception] = conn.dialect.loaded_dbapi.Error
    try:
        if dialect == "postgresql":
            data = io.BytesIO()
            stored.write_csv(data, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S.%6f%:z")
            with raw.cursor() as cur, cur.copy(statement) as copy:
                copy.write(data.getbuffer())
        else:
            cursor = raw.cursor()
            try:
                for start in range(0, stored.height, _SQLITE_SLICE_ROWS):
                    cursor.executemany(statement, stored.slice(start, _SQLITE_SLICE_ROWS).rows())
            finally:
                cursor.close()
    except dbapi_error as exc:  # the same exceptions as through SQLAlchemy (e.g. IntegrityError), no values
        raise DBAPIError.instance(
            statement, None, exc, dbapi_error, hide_parameters=True, dialect=conn.dialect
        ) from exc
    return frame.height
