"""The fast storage path: COPY on PostgreSQL, executemany in one transaction elsewhere.

`bulk_insert` takes plain row dicts (already validated) and writes them in batches. With
`on_conflict_ignore`, rows whose primary or unique key already exists are skipped, which is
what makes deterministic ids idempotent (a retry is a no-op)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


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
    written = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        if on_conflict_ignore:
            stmt: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(
                table
            ).on_conflict_do_nothing()
        else:
            stmt = insert(table)
        result = conn.execute(stmt, list(chunk))
        written += result.rowcount if result.rowcount and result.rowcount > 0 else 0
    return written
